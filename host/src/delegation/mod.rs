//! Delegated credentials (on behalf of the caller): an http grant's `inject` can ask, instead
//! of a configured secret, for a token that the gateway obtains by OAuth 2.0 token exchange
//! (RFC 8693) for the calling principal — the subject token is the caller's validated access
//! token, the audience, resource and scope come from the grant. The upstream sees the real
//! user; the tool holds no credential, only the requests that the grant matches carry it, and
//! every answer is scrubbed of it.
//!
//! ```json
//! {"host": "orders.internal", "inject": {"header": "Authorization", "format": "Bearer {}",
//!   "exchange": {"audience": "https://orders.internal", "scope": "orders:read"}}}
//! ```
//!
//! Lifecycle: [`Delegation`] is built once at start from `[token_exchange]` (the token endpoint
//! and the gateway's client credentials); per call, [`Delegation::tokens`] gives the tokens the
//! call's grants ask for, from a cache keyed by subject token and grant, each kept until
//! `refresh_before` ahead of its expiry (and not at all without `expires_in`), and never past
//! the subject token's own `exp`. Concurrent calls of one caller for one grant wait for one
//! exchange, and a failed one is remembered for [`FAILED_KEEP`], so its waiters fail at once
//! with its reason instead of each trying again. A call's exchanges run together, each bounded
//! by `timeout` and all of them a little past it. Any failure — no subject token, the endpoint unreachable, slow or
//! refusing — fails the call before it is admitted; nothing falls back to another credential.

mod exchange;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use exchange::Issued;

use crate::outbound::Target;
use crate::secrets::Secrets;

/// The caller's validated OAuth access token, held for the request it came with and handed
/// to nothing but the token endpoint.
#[derive(Clone)]
pub struct SubjectToken {
    token: Arc<Zeroizing<String>>,
    digest: [u8; 32],
    /// Its `exp`, in seconds since the epoch: a token exchanged for it is not kept past it.
    expires: Option<u64>,
}

impl SubjectToken {
    pub fn new(token: &str, expires: Option<u64>) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            token: Arc::new(Zeroizing::new(token.to_string())),
            expires,
        }
    }

    /// How much longer the token is valid, if it says.
    fn remaining(&self) -> Option<Duration> {
        self.expires.map(|exp| {
            Duration::from_millis(
                exp.saturating_mul(1000)
                    .saturating_sub(crate::time::now_ms()),
            )
        })
    }

    fn expose(&self) -> &str {
        self.token.as_str()
    }
}

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectToken([redacted])")
    }
}

/// What an exchanged token is for, as the grant states it (`inject.exchange`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSpec {
    /// The logical name of the service the token is for (RFC 8693 `audience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The URI of the service the token is for (RFC 8693 `resource`, RFC 8707).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Space-separated scopes the token should carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl ExchangeSpec {
    /// The reason the spec cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !present(&self.audience) && !present(&self.resource) {
            return Err("inject.exchange needs an `audience` or a `resource`: a token for no one in particular is not delegated".into());
        }
        if let Some(resource) = &self.resource {
            let absolute = resource
                .parse::<http::Uri>()
                .is_ok_and(|u| u.scheme().is_some() && u.host().is_some());
            if !absolute {
                return Err(format!(
                    "inject.exchange.resource `{resource}` is not an absolute URI"
                ));
            }
        }
        if let Some(scope) = &self.scope {
            // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
            let bad = scope.split(' ').find(|word| {
                word.is_empty()
                    || !word
                        .bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
            });
            if let Some(word) = bad {
                return Err(format!(
                    "inject.exchange.scope `{scope}` is not a space-separated list of scopes (at `{word}`)"
                ));
            }
        }
        for text in [&self.audience, &self.resource, &self.scope]
            .into_iter()
            .flatten()
        {
            if text.len() > 1024 || text.chars().any(|c| c.is_control() || c == ';') {
                // Without `;` the token's name (`name`) is unambiguous: two different specs
                // never share one, so no grant is handed another grant's token.
                return Err("inject.exchange values are at most 1 KiB of text without control characters or `;`".into());
            }
        }
        Ok(())
    }

    /// The name the call's token goes by, in its secrets and scrub markers
    /// (`exchanged:aud=…`): it says what the token is for, never what it is.
    pub fn name(&self) -> String {
        let mut name = String::from("exchanged:");
        for (key, value) in [
            ("aud", &self.audience),
            ("resource", &self.resource),
            ("scope", &self.scope),
        ] {
            if let Some(value) = value {
                if !name.ends_with(':') {
                    name.push(';');
                }
                name.push_str(key);
                name.push('=');
                name.push_str(value);
            }
        }
        name
    }
}

/// `[token_exchange]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// The authorization server's token endpoint.
    pub token_endpoint: String,
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// The `[secrets]` entry holding the client's secret (sent with HTTP Basic, RFC 6749
    /// §2.3.1); never granted to a call.
    pub client_secret: String,
    /// How long one exchange may take.
    pub timeout: Duration,
    /// A cached token is exchanged again this long before it expires.
    pub refresh_before: Duration,
    /// Tokens kept at most; past it, expired ones go, and if none had, all of them.
    pub max_cached: usize,
    /// What grants may ask tokens for.
    pub ceiling: ExchangeCeiling,
}

/// The operator's ceiling on what a decision may ask tokens for (`[token_exchange]`
/// `audiences`, `resources`, `scopes`): each list, when given, holds every value a grant may
/// name, and a grant must then name one (a grant that leaves the scope out gets the endpoint's
/// default scopes; one that names a resource while only audiences are listed names a target
/// the operator did not list). A grant beyond it is refused like any grant beyond `[ceilings]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeCeiling {
    pub audiences: Option<BTreeSet<String>>,
    pub resources: Option<BTreeSet<String>>,
    pub scopes: Option<BTreeSet<String>>,
}

impl ExchangeCeiling {
    /// Why `spec` asks for more than the ceiling allows, if it does.
    pub fn beyond(&self, spec: &ExchangeSpec) -> Option<String> {
        let targets_listed = self.audiences.is_some() || self.resources.is_some();
        for (kind, key, list, value) in [
            ("audience", "audiences", &self.audiences, &spec.audience),
            ("resource", "resources", &self.resources, &spec.resource),
        ] {
            match (list, value) {
                (Some(list), Some(value)) if !list.contains(value) => {
                    return Some(format!(
                        "inject.exchange asks for a token for {kind} `{value}`, which is not in token_exchange.{key}"
                    ));
                }
                (None, Some(value)) if targets_listed => {
                    return Some(format!(
                        "inject.exchange asks for a token for {kind} `{value}`, but token_exchange lists no {key}: only the targets it lists can be asked for"
                    ));
                }
                _ => {}
            }
        }
        if let Some(allowed) = &self.scopes {
            let Some(scope) = spec.scope.as_deref() else {
                return Some("inject.exchange names no scope, but token_exchange.scopes is set: a token with the endpoint's default scopes could carry more than the list".into());
            };
            if let Some(word) = scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .find(|s| !allowed.contains(*s))
            {
                return Some(format!(
                    "inject.exchange asks for scope `{word}`, which is not in token_exchange.scopes"
                ));
            }
        }
        None
    }
}

/// A call's exchanges end this long after `timeout` at the latest.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// A token is kept at most this long (s), whatever its `expires_in` says.
const MAX_KEEP_S: u64 = 24 * 3600;

/// A failed exchange is remembered this long: the calls that waited for it, and those right
/// after, get its reason without asking the endpoint again.
pub const FAILED_KEEP: Duration = Duration::from_secs(2);

/// What the cache holds for a key.
enum Held {
    /// A token, exchanged again past `fresh_until`.
    Token {
        token: Zeroizing<String>,
        fresh_until: Instant,
    },
    /// A failed exchange, and why; asked again past `until`.
    Failed { reason: String, until: Instant },
}

impl Held {
    fn until(&self) -> Instant {
        match self {
            Self::Token { fresh_until, .. } => *fresh_until,
            Self::Failed { until, .. } => *until,
        }
    }
}

/// The subject token's digest and the grant's spec: one token each.
type Key = ([u8; 32], ExchangeSpec);

/// One slot per key; its lock makes concurrent callers wait for one exchange.
type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

/// The token exchange client and its cache.
pub struct Delegation {
    config: ExchangeConfig,
    endpoint: Target,
    client_secret: Zeroizing<String>,
    cache: Mutex<HashMap<Key, Slot>>,
}

impl std::fmt::Debug for Delegation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delegation")
            .field("token_endpoint", &self.config.token_endpoint)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl Delegation {
    /// The client for `config`, its secret read from `secrets`.
    pub fn new(config: &ExchangeConfig, secrets: &Secrets) -> Result<Self, String> {
        let endpoint = Target::parse(&config.token_endpoint, "token_exchange.token_endpoint")
            .map_err(|e| format!("{e:#}"))?;
        let name = config.client_secret.as_str();
        let client_secret = secrets
            .for_call([name])
            .map_err(|e| format!("token_exchange.client_secret: {e}"))?
            .get(name)
            .map(|v| Zeroizing::new(v.to_string()))
            .ok_or_else(|| format!("token_exchange.client_secret: secret {name} has no value"))?;
        Ok(Self {
            config: config.clone(),
            endpoint,
            client_secret,
            cache: Mutex::default(),
        })
    }

    /// What grants may ask tokens for.
    pub fn ceiling(&self) -> &ExchangeCeiling {
        &self.config.ceiling
    }

    /// The secret the gateway authenticates with: never granted or injected into a call.
    pub fn client_secret_name(&self) -> &str {
        &self.config.client_secret
    }

    /// The tokens for `specs` (name and value), exchanged for `subject`, or why not.
    pub async fn tokens(
        &self,
        specs: &[&ExchangeSpec],
        subject: Option<&SubjectToken>,
    ) -> Result<Vec<(String, Zeroizing<String>)>, String> {
        let Some(subject) = subject else {
            return Err(format!(
                "the policy grants a token exchanged for the caller ({}), but this caller has no OAuth access token to exchange: only callers that authenticate with one (streamable HTTP with [oauth]) can be delegated, and a call resumed later (a task) no longer holds it",
                specs.first().map(|s| s.name()).unwrap_or_default()
            ));
        };
        // All of them to the end (each is bounded), not to the first failure: a sibling cut
        // off mid-request would leave no failure remembered for its waiters.
        let all = async {
            futures::future::join_all(specs.iter().map(|spec| async move {
                let token = self.token(spec, subject).await?;
                Ok::<_, String>((spec.name(), token))
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, String>>()
        };
        // Each request is bounded by `timeout`, and its failure is remembered for the calls
        // that waited on it; this bounds the whole, waits for a slot included, a little later
        // (so that a request's own timeout, not this, is what ends a slow one).
        let deadline = self.config.timeout + DEADLINE_GRACE;
        tokio::time::timeout(deadline, all)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "token exchange: no token within {} ms",
                    deadline.as_millis()
                ))
            })
    }

    fn slot(&self, key: Key) -> Slot {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.config.max_cached && !cache.contains_key(&key) {
            let now = Instant::now();
            // Slots in use (locked) are kept; stale and empty ones go.
            cache.retain(|_, slot| {
                slot.try_lock()
                    .map_or(true, |c| c.as_ref().is_some_and(|c| c.until() > now))
            });
            if cache.len() >= self.config.max_cached {
                cache.clear();
            }
        }
        cache.entry(key).or_default().clone()
    }

    async fn token(
        &self,
        spec: &ExchangeSpec,
        subject: &SubjectToken,
    ) -> Result<Zeroizing<String>, String> {
        let slot = self.slot((subject.digest, spec.clone()));
        let mut held = slot.lock().await;
        match held.as_ref() {
            Some(Held::Token { token, fresh_until }) if *fresh_until > Instant::now() => {
                return Ok(token.clone());
            }
            Some(Held::Failed { reason, until }) if *until > Instant::now() => {
                return Err(reason.clone());
            }
            _ => *held = None,
        }
        let started = Instant::now();
        let issued = exchange::request(
            &self.endpoint,
            &self.config.client_id,
            &self.client_secret,
            spec,
            subject.expose(),
            self.config.timeout,
        )
        .await
        .map_err(|e| format!("token exchange for {}: {e}", spec.name()));
        let issued = match issued {
            Ok(issued) => issued,
            Err(reason) => {
                *held = Some(Held::Failed {
                    reason: reason.clone(),
                    until: Instant::now() + FAILED_KEEP,
                });
                return Err(reason);
            }
        };
        let keep = issued
            .expires_in
            .map(|s| Duration::from_secs(s.min(MAX_KEEP_S)))
            .map(|d| d.saturating_sub(self.config.refresh_before))
            .map(|keep| subject.remaining().map_or(keep, |left| keep.min(left)))
            .filter(|keep| !keep.is_zero());
        tracing::info!(
            token_for = %spec.name(),
            expires_in = issued.expires_in,
            cached_s = keep.map_or(0, |k| k.as_secs()),
            took_ms = started.elapsed().as_millis() as u64,
            "exchanged the caller's access token"
        );
        if let Some(keep) = keep {
            *held = Some(Held::Token {
                token: issued.token.clone(),
                fresh_until: started + keep,
            });
        }
        Ok(issued.token)
    }
}

#[cfg(test)]
mod tests;
