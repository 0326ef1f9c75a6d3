//! The capabilities a call can be granted beyond its limits — directories, outbound HTTP,
//! secrets, credentials exchanged for the caller — and the operator's ceilings on them.
//!
//! Lifecycle: [`Capabilities`] is validated at start (egress settings, secret sources,
//! ceilings, the token exchange client); the gate checks each decision against the ceilings
//! ([`Capabilities::check`]), and the runner prepares each call's share: the exchanged tokens
//! first ([`Capabilities::delegate`], the one step that waits on the network), then the rest
//! ([`Capabilities::prepare`]). Policy is code, and code
//! has bugs: a decision beyond a ceiling is denied with a reason, never narrowed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::delegation::{Delegation, ExchangeSpec, SubjectToken};
use crate::egress::{
    CallEgress, Egress, EgressConfig, Host, HostPattern, HttpRule, Scrubber, canonical, deny_reason,
};
use crate::grants::Grants;
use crate::secrets::{CallSecrets, Secrets};

/// One entry of `ceilings.http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpCeiling {
    /// `*`: any host name, and any numeric address outside the deny ranges.
    Public,
    /// A name or `*.suffix`.
    Names(HostPattern),
    /// An address or CIDR, private or not.
    Net(IpNet),
}

impl HttpCeiling {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Public);
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        match HostPattern::parse(text)? {
            HostPattern::Exact(Host::Ip(ip)) => Ok(Self::Net(IpNet::from(canonical(ip)))),
            pattern => Ok(Self::Names(pattern)),
        }
    }

    fn covers_host(&self, host: &HostPattern) -> bool {
        match (self, host) {
            (Self::Public, HostPattern::Exact(Host::Ip(ip))) => deny_reason(*ip).is_none(),
            (Self::Public, _) => true,
            (Self::Net(net), HostPattern::Exact(Host::Ip(ip))) => net.contains(&canonical(*ip)),
            (Self::Net(_), _) => false,
            (Self::Names(pattern), HostPattern::Exact(host)) => pattern.matches(host),
            (Self::Names(HostPattern::Suffix(outer)), HostPattern::Suffix(inner)) => {
                inner == outer || inner.ends_with(&format!(".{outer}"))
            }
            (Self::Names(_), HostPattern::Suffix(_)) => false,
        }
    }
}

/// The most any decision may grant.
#[derive(Clone, Debug)]
pub struct Ceilings {
    /// Directories any fs grant must be inside (canonical paths).
    pub fs: Vec<PathBuf>,
    pub http: Vec<HttpCeiling>,
    /// Secret names a decision may grant or inject; `None`: every configured secret.
    pub secrets: Option<Vec<String>>,
}

/// Egress, secrets and ceilings, validated.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub egress: Arc<Egress>,
    pub secrets: Secrets,
    pub ceilings: Ceilings,
    /// The token exchange client (`[token_exchange]`), if configured.
    pub delegation: Option<Arc<Delegation>>,
}

/// What one call holds besides its WASI context.
pub struct CallCapabilities {
    pub egress: CallEgress,
    /// What `secret(name)` may return.
    pub secrets: CallSecrets,
    /// Every secret value of the call, for scrubbing what it returns.
    pub scrubber: Scrubber,
}

impl Capabilities {
    pub fn new(
        egress: &EgressConfig,
        secrets: Secrets,
        ceilings: Ceilings,
    ) -> Result<Self, String> {
        Ok(Self {
            egress: Arc::new(Egress::new(egress)?),
            secrets,
            ceilings,
            delegation: None,
        })
    }

    /// Exchanges callers' tokens with `delegation` for grants that ask.
    pub fn with_delegation(mut self, delegation: Option<Delegation>) -> Self {
        self.delegation = delegation.map(Arc::new);
        self
    }

    /// No secrets, default egress settings, ceilings at `fs_roots` and public hosts: for tests
    /// and benchmarks that build a runner without a configuration.
    pub fn basic(fs_roots: Vec<PathBuf>) -> Self {
        let ceilings = Ceilings {
            fs: fs_roots,
            http: vec![HttpCeiling::Public],
            secrets: None,
        };
        Self {
            egress: Arc::new(
                Egress::new(&EgressConfig::default())
                    .unwrap_or_else(|e| unreachable!("the default egress settings are valid: {e}")),
            ),
            secrets: Secrets::default(),
            ceilings,
            delegation: None,
        }
    }

    /// Every way `grants` goes beyond what this gateway may grant, or cannot be honoured.
    pub fn check(&self, grants: &Grants) -> Vec<String> {
        let mut refusals = Vec::new();
        for fs in &grants.fs {
            if let Some(why) = self.fs_beyond(&fs.host) {
                refusals.push(why);
            }
        }
        match Egress::check(&grants.http) {
            Err(e) => refusals.push(e),
            Ok(rules) => {
                for rule in &rules {
                    refusals.extend(self.http_beyond(rule));
                    let Some(spec) = rule.inject.as_ref().and_then(|i| i.exchange.as_ref()) else {
                        continue;
                    };
                    match &self.delegation {
                        None => refusals.push(format!(
                            "http grant `{}` injects a token exchanged for the caller, but the gateway has no [token_exchange] configured",
                            rule.spec
                        )),
                        Some(delegation) => {
                            if let Some(why) = delegation.ceiling().beyond(spec) {
                                refusals.push(format!("http grant `{}`: {why}", rule.spec));
                            }
                        }
                    }
                }
            }
        }
        for name in secret_names(grants) {
            if let Some(delegation) = &self.delegation
                && delegation.client_secret_name() == name
            {
                refusals.push(format!(
                    "the policy grants secret {name}, the gateway's own token exchange credential (token_exchange.client_secret), which no call may hold"
                ));
            } else if let Some(allowed) = &self.ceilings.secrets
                && !allowed.iter().any(|a| a == name)
            {
                refusals.push(format!(
                    "the policy grants secret {name}, beyond the gateway's ceiling (ceilings.secrets)"
                ));
            } else if let Some(why) = self.secrets.unavailable(name) {
                refusals.push(why);
            }
        }
        refusals
    }

    fn fs_beyond(&self, host: &Path) -> Option<String> {
        let real = match std::fs::canonicalize(host) {
            Ok(real) => real,
            Err(e) => {
                return Some(format!(
                    "cannot open granted directory `{}`: {e}",
                    host.display()
                ));
            }
        };
        if self.ceilings.fs.iter().any(|root| real.starts_with(root)) {
            return None;
        }
        let roots: Vec<String> = self
            .ceilings
            .fs
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        Some(format!(
            "the policy grants directory `{}`, outside the gateway's ceiling (ceilings.fs: {})",
            host.display(),
            if roots.is_empty() {
                "none".into()
            } else {
                roots.join(", ")
            }
        ))
    }

    fn http_beyond(&self, rule: &HttpRule) -> Vec<String> {
        let mut out = Vec::new();
        let ceilings = &self.ceilings.http;
        if !ceilings.iter().any(|c| c.covers_host(&rule.host)) {
            out.push(format!(
                "the policy grants http host `{}`, beyond the gateway's ceiling (ceilings.http)",
                rule.spec
            ));
        }
        let implicit = match &rule.host {
            HostPattern::Exact(Host::Ip(ip)) => Some(IpNet::from(canonical(*ip))),
            _ => None,
        };
        for net in &rule.allow_private {
            if Some(*net) == implicit {
                continue;
            }
            let covered = ceilings.iter().any(|c| match c {
                HttpCeiling::Net(outer) => outer.contains(net),
                _ => false,
            });
            if !covered {
                out.push(format!(
                    "the policy lets http grant `{}` reach private addresses {net}, beyond the gateway's ceiling (ceilings.http)",
                    rule.spec
                ));
            }
        }
        out
    }

    /// The tokens `grants` asks to be exchanged for the caller `subject` (none for most
    /// calls: then nothing waits).
    pub async fn delegate(
        &self,
        grants: &Grants,
        subject: Option<&SubjectToken>,
    ) -> Result<CallSecrets, String> {
        let specs = exchanges(grants);
        if specs.is_empty() {
            return Ok(CallSecrets::default());
        }
        let Some(delegation) = &self.delegation else {
            return Err("the policy grants a token exchanged for the caller, but the gateway has no [token_exchange] configured".into());
        };
        // A stage of its own only for the calls that have one.
        let stage = tracing::info_span!(target: crate::telemetry::STAGE, "delegate");
        let tokens = delegation.tokens(&specs, subject).instrument(stage).await?;
        Ok(CallSecrets::from_values(tokens))
    }

    /// The egress hook, the secrets and the scrubber of one call; `delegated` holds the tokens
    /// exchanged for it ([`Self::delegate`]).
    pub fn prepare(
        &self,
        grants: &Grants,
        delegated: &CallSecrets,
    ) -> Result<CallCapabilities, String> {
        // [`Self::check`] refuses it in decisions; this holds for every other path to a call
        // too (`portcullis run --grant-secret`).
        if let Some(delegation) = &self.delegation
            && let Some(name) = secret_names(grants).find(|n| *n == delegation.client_secret_name())
        {
            return Err(format!(
                "secret {name} is the gateway's own token exchange credential (token_exchange.client_secret), which no call may hold"
            ));
        }
        let granted = self
            .secrets
            .for_call(grants.secrets.iter().map(String::as_str))?;
        if grants.http.is_empty() {
            return Ok(CallCapabilities {
                egress: CallEgress::none(&self.egress),
                scrubber: granted.scrubber(),
                secrets: granted,
            });
        }
        let injected = self
            .secrets
            .for_call(injected_names(grants))?
            .merged(delegated);
        let mut values: Vec<(String, Zeroizing<Vec<u8>>)> = Vec::new();
        for call in [&granted, &injected] {
            for (name, value) in call.pairs() {
                if !values.iter().any(|(n, _)| n == name) {
                    values.push((name.to_string(), Zeroizing::new(value.as_bytes().to_vec())));
                }
            }
        }
        let scrubber = Scrubber::new(values);
        Ok(CallCapabilities {
            egress: self
                .egress
                .prepare(&grants.http, &injected, scrubber.clone())?,
            secrets: granted,
            scrubber,
        })
    }
}

/// The configured secrets the host injects into HTTP requests.
fn injected_names(grants: &Grants) -> impl Iterator<Item = &str> {
    grants
        .http
        .iter()
        .filter_map(|g| g.inject.as_ref())
        .filter(|i| i.exchange.is_none())
        .map(|i| i.secret.as_str())
}

/// The tokens the host exchanges for the caller, each once.
fn exchanges(grants: &Grants) -> Vec<&ExchangeSpec> {
    let mut specs: Vec<&ExchangeSpec> = Vec::new();
    for spec in grants
        .http
        .iter()
        .filter_map(|g| g.inject.as_ref()?.exchange.as_ref())
    {
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    specs
}

/// Every secret name a grant set uses: granted to the tool, or injected by the host.
fn secret_names(grants: &Grants) -> impl Iterator<Item = &str> {
    grants
        .secrets
        .iter()
        .map(String::as_str)
        .chain(injected_names(grants))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::HttpGrant;

    fn rule(json: serde_json::Value) -> HttpRule {
        let grant: HttpGrant = serde_json::from_value(json).unwrap();
        HttpRule::compile(&grant).unwrap()
    }

    fn caps(http: &[&str]) -> Capabilities {
        let mut c = Capabilities::basic(vec![std::env::temp_dir().canonicalize().unwrap()]);
        c.ceilings.http = http
            .iter()
            .map(|h| HttpCeiling::parse(h).unwrap())
            .collect();
        c
    }

    #[test]
    fn http_ceilings_bound_hosts_and_private_addresses() {
        let public = caps(&["*"]);
        assert!(
            public
                .http_beyond(&rule(serde_json::json!({"host": "api.example.com"})))
                .is_empty()
        );
        assert!(
            public
                .http_beyond(&rule(serde_json::json!({"host": "1.1.1.1"})))
                .is_empty()
        );
        assert_eq!(
            public
                .http_beyond(&rule(serde_json::json!({"host": "127.0.0.1"})))
                .len(),
            1
        );
        assert_eq!(
            public
                .http_beyond(&rule(
                    serde_json::json!({"host": "db.internal", "allow_private": ["10.0.0.0/8"]})
                ))
                .len(),
            1
        );
        let internal = caps(&["*.corp.example", "10.0.0.0/8", "127.0.0.1"]);
        assert!(
            internal
                .http_beyond(&rule(serde_json::json!({"host": "a.corp.example"})))
                .is_empty()
        );
        assert!(
            internal
                .http_beyond(&rule(serde_json::json!({"host": "*.b.corp.example"})))
                .is_empty()
        );
        assert!(
            !internal
                .http_beyond(&rule(serde_json::json!({"host": "*.other.example"})))
                .is_empty()
        );
        assert!(
            !internal
                .http_beyond(&rule(serde_json::json!({"host": "api.example.com"})))
                .is_empty()
        );
        assert!(
            internal
                .http_beyond(&rule(
                    serde_json::json!({"host": "127.1", "schemes": ["http"]})
                ))
                .is_empty()
        );
        assert!(
            internal
                .http_beyond(&rule(
                    serde_json::json!({"host": "a.corp.example", "allow_private": ["10.1.0.0/16"]})
                ))
                .is_empty()
        );
        assert!(
            !internal
                .http_beyond(&rule(
                    serde_json::json!({"host": "a.corp.example", "allow_private": ["0.0.0.0/0"]})
                ))
                .is_empty()
        );
    }

    #[test]
    fn fs_ceilings_hold_by_real_path() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("ws");
        std::fs::create_dir(&inside).unwrap();
        let c = Capabilities::basic(vec![inside.canonicalize().unwrap()]);
        assert_eq!(c.fs_beyond(&inside), None);
        assert!(
            c.fs_beyond(Path::new("/"))
                .unwrap()
                .contains("outside the gateway's ceiling")
        );
        let evil = root.path().join("ws-evil");
        std::fs::create_dir(&evil).unwrap();
        assert!(
            c.fs_beyond(&evil).is_some(),
            "a sibling with the same prefix is outside"
        );
        let link = inside.join("up");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        assert!(
            c.fs_beyond(&link).is_some(),
            "a symlink out of the root is outside"
        );
    }

    #[test]
    fn exchanged_tokens_need_token_exchange_and_its_credential_is_never_granted() {
        let grants: Grants = serde_json::from_value(serde_json::json!({
            "http": [{"host": "api.example", "inject": {"header": "Authorization",
                "exchange": {"audience": "https://api.example", "scope": "read"}}}],
            "secrets": ["EX"],
        }))
        .unwrap();
        let without = caps(&["*"]);
        let refusals = without.check(&grants).join("\n");
        assert!(
            refusals.contains("no [token_exchange] configured"),
            "{refusals}"
        );

        let fixed = crate::secrets::Fixed("client-secret-1");
        let (secrets, _) = Secrets::load(vec![("EX".into(), Box::new(fixed))]).unwrap();
        let config = crate::delegation::ExchangeConfig {
            token_endpoint: "http://127.0.0.1:9/token".into(),
            client_id: "gw".into(),
            client_secret: "EX".into(),
            timeout: std::time::Duration::from_secs(1),
            refresh_before: std::time::Duration::from_secs(30),
            max_cached: 10,
            ceiling: crate::delegation::ExchangeCeiling {
                audiences: Some(["https://api.example".to_string()].into()),
                resources: None,
                scopes: Some(["read".to_string()].into()),
            },
        };
        let mut with = caps(&["*"]);
        with.secrets = secrets.clone();
        let with = with.with_delegation(Some(Delegation::new(&config, &secrets).unwrap()));
        let refusals = with.check(&grants);
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(
            refusals[0].contains("the gateway's own token exchange credential"),
            "{refusals:?}"
        );
        let e = with
            .prepare(&grants, &CallSecrets::default())
            .err()
            .unwrap();
        assert!(e.contains("no call may hold"), "{e}");

        // Beyond the operator's lists of audiences and scopes: refused, naming the value.
        for (exchange, why) in [
            (
                serde_json::json!({"audience": "https://payments.example"}),
                "audience `https://payments.example`, which is not in token_exchange.audiences",
            ),
            (
                serde_json::json!({"audience": "https://api.example", "scope": "read write"}),
                "scope `write`, which is not in token_exchange.scopes",
            ),
            // Leaving a listed field out does not step around its list.
            (
                serde_json::json!({"audience": "https://api.example"}),
                "names no scope, but token_exchange.scopes is set",
            ),
            (
                serde_json::json!({"resource": "https://api.example/", "scope": "read"}),
                "token_exchange lists no resources",
            ),
        ] {
            let grants: Grants = serde_json::from_value(serde_json::json!({
                "http": [{"host": "api.example", "inject": {"header": "Authorization", "exchange": exchange}}],
            }))
            .unwrap();
            let refusals = with.check(&grants).join("\n");
            assert!(refusals.contains(why), "{refusals}");
        }
        let within: Grants = serde_json::from_value(serde_json::json!({
            "http": [{"host": "api.example", "inject": {"header": "Authorization",
                "exchange": {"audience": "https://api.example", "scope": "read"}}}],
        }))
        .unwrap();
        assert!(with.check(&within).is_empty());
    }
}
