//! Name resolution for outbound requests: one abstraction, so that the address that is checked
//! is the address that is connected to (no second lookup, no DNS-rebinding window).
//!
//! Names in the operator's static map (`[egress.resolve]`) resolve to exactly the addresses
//! given there and never reach DNS; every other name goes to the system resolver.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::address::{Host, parse_host};

/// Resolves names to addresses.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    pinned: BTreeMap<String, Vec<IpAddr>>,
    /// Whether names outside the map go to the system resolver (always, except in tests).
    system: bool,
}

impl Resolver {
    /// The system resolver, with `pinned` names answered from the map.
    pub fn new(pinned: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (name, addrs) in pinned {
            let Host::Name(key) = parse_host(name).map_err(|e| format!("egress.resolve: {e}"))?
            else {
                return Err(format!(
                    "egress.resolve: `{name}` is an address; only names can be pinned"
                ));
            };
            if addrs.is_empty() {
                return Err(format!("egress.resolve.{name}: give at least one address"));
            }
            let mut ips = Vec::new();
            for addr in addrs {
                match parse_host(addr) {
                    Ok(Host::Ip(ip)) => ips.push(ip),
                    _ => {
                        return Err(format!(
                            "egress.resolve.{name}: `{addr}` is not an IP address"
                        ));
                    }
                }
            }
            map.insert(key, ips);
        }
        Ok(Self {
            pinned: map,
            system: true,
        })
    }

    /// Only the map: every other name fails to resolve (for tests).
    pub fn pinned_only(pinned: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        Ok(Self {
            system: false,
            ..Self::new(pinned)?
        })
    }

    /// The addresses of `name` (already in its one spelling).
    pub async fn resolve(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        if let Some(ips) = self.pinned.get(name) {
            return Ok(ips.clone());
        }
        if !self.system {
            return Err(format!("cannot resolve {name}: not in egress.resolve"));
        }
        let found = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| format!("cannot resolve {name}: {e}"))?;
        let mut ips: Vec<IpAddr> = Vec::new();
        for addr in found {
            if !ips.contains(&addr.ip()) {
                ips.push(addr.ip());
            }
        }
        if ips.is_empty() {
            return Err(format!("cannot resolve {name}: no addresses"));
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pinned_names_never_reach_dns() {
        let map = BTreeMap::from([(
            "Deploy.Internal.".to_string(),
            vec!["10.0.0.7".to_string(), "[fd00::7]".to_string()],
        )]);
        let r = Resolver::pinned_only(&map).unwrap();
        assert_eq!(
            r.resolve("deploy.internal", 443).await.unwrap(),
            vec![
                "10.0.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert!(r.resolve("other.internal", 443).await.is_err());
        let bad = BTreeMap::from([("a.b".to_string(), vec!["nope".to_string()])]);
        assert!(
            Resolver::new(&bad)
                .unwrap_err()
                .contains("not an IP address")
        );
        let ip = BTreeMap::from([("10.0.0.1".to_string(), vec!["10.0.0.2".to_string()])]);
        assert!(Resolver::new(&ip).unwrap_err().contains("only names"));
    }
}
