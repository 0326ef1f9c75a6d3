//! Addresses a guest may not reach unless a grant names them: the deny ranges.
//!
//! Every address a request would connect to is checked here, after resolution, whatever name or
//! spelling led to it. IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible,
//! NAT64, 6to4) are judged by the IPv4 address inside them as well.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A deny range: its network and what it is.
struct Range {
    net: ipnet::IpNet,
    what: &'static str,
}

macro_rules! ranges {
    ($($net:literal => $what:literal),* $(,)?) => {
        [$(($net, $what)),*]
    };
}

/// The deny ranges, most specific first (the first match names the reason).
const DENY: [(&str, &str); 33] = ranges![
    "169.254.169.254/32" => "a cloud metadata address",
    "169.254.170.2/32" => "a cloud metadata address (ECS task metadata)",
    "100.100.100.200/32" => "a cloud metadata address (Alibaba Cloud)",
    "168.63.129.16/32" => "a cloud platform address (Azure WireServer)",
    "192.0.0.192/32" => "a cloud metadata address (Oracle Cloud)",
    "fd00:ec2::254/128" => "a cloud metadata address (AWS IPv6)",
    "0.0.0.0/8" => "an unspecified (\"this network\") address",
    "10.0.0.0/8" => "a private address",
    "100.64.0.0/10" => "a shared (CGNAT) address",
    "127.0.0.0/8" => "a loopback address",
    "169.254.0.0/16" => "a link-local address",
    "172.16.0.0/12" => "a private address",
    "192.0.0.0/24" => "an IETF protocol address",
    "192.0.2.0/24" => "a documentation address",
    "192.88.99.0/24" => "a 6to4 relay address",
    "192.168.0.0/16" => "a private address",
    "198.18.0.0/15" => "a benchmarking address",
    "198.51.100.0/24" => "a documentation address",
    "203.0.113.0/24" => "a documentation address",
    "224.0.0.0/4" => "a multicast address",
    "240.0.0.0/4" => "a reserved address",
    "::/128" => "the unspecified address",
    "::1/128" => "a loopback address",
    "::/96" => "an IPv4-compatible address",
    "64:ff9b:1::/48" => "a local-use NAT64 address",
    "100::/64" => "a discard-only address",
    "2001::/32" => "a Teredo address",
    "2001:db8::/32" => "a documentation address",
    "2001:10::/28" => "an ORCHID address",
    "fc00::/7" => "a unique-local address",
    "fe80::/10" => "a link-local address",
    "fec0::/10" => "a site-local address",
    "ff00::/8" => "a multicast address",
];

fn deny_table() -> &'static [Range] {
    static TABLE: std::sync::OnceLock<Vec<Range>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        DENY.iter()
            .filter_map(|(net, what)| net.parse().ok().map(|net| Range { net, what }))
            .collect()
    })
}

/// The IPv4 address an IPv6 address carries, by a form that routes to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::`).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if !(s[6] == 0 && s[7] <= 1) => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// Why `ip` is in a deny range (e.g. "a loopback address"), or `None` if it is public.
pub fn deny_reason(ip: IpAddr) -> Option<&'static str> {
    let table = deny_table();
    let direct = |ip: IpAddr| {
        table
            .iter()
            .find(|range| range.net.contains(&ip))
            .map(|range| range.what)
    };
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = embedded_ipv4(v6)
        && let Some(what) = direct(IpAddr::V4(v4))
    {
        return Some(what);
    }
    direct(ip)
}

/// `ip` as the IPv4 address it stands for when it is one in IPv6 form, else itself: allow-lists
/// written as IPv4 CIDRs also cover their IPv4-mapped spellings.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        deny_reason(text.parse().unwrap())
    }

    #[test]
    fn the_table_parses_whole() {
        assert_eq!(deny_table().len(), DENY.len());
    }

    #[test]
    fn private_loopback_metadata_and_friends_are_denied() {
        for (ip, what) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("169.254.169.254", "metadata"),
            ("100.100.100.200", "metadata"),
            ("168.63.129.16", "Azure"),
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "unique-local"),
            ("fd00:ec2::254", "metadata"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "metadata"),
            ("64:ff9b:1::1", "NAT64"),
            ("2001::1", "Teredo"),
        ] {
            let got = reason(ip).unwrap_or_else(|| panic!("{ip} was allowed"));
            assert!(got.contains(what), "{ip}: {got}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn mapped_addresses_have_a_canonical_ipv4_form() {
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
