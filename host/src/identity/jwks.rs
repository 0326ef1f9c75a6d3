//! The issuer's signing keys: its JWKS, found through its metadata (RFC 8414, then OpenID
//! Connect discovery) unless configured, fetched at start and every `jwks_max_age` beside
//! serving, and again when a token names a key we do not have (at most once per
//! `jwks_min_refresh`, which also paces retries after a failure). Symmetric (`oct`) keys and keys not for signatures are never
//! loaded: a resource server verifies with public keys only.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::Refusal;
use crate::config::OAuthConfig;
use crate::outbound::Target;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One usable public key.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK is restricted to, if it says.
    alg: Option<Algorithm>,
    key: Arc<DecodingKey>,
}

struct Loaded {
    keys: Vec<Key>,
}

pub(super) struct KeySet {
    issuer: String,
    /// The configured JWKS URL; otherwise found in the issuer's metadata on first fetch.
    jwks_uri: tokio::sync::Mutex<Option<Target>>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// When a fetch was last tried; one fetch at a time.
    last_try: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    max_age: Duration,
}

impl KeySet {
    pub(super) fn new(config: &OAuthConfig) -> anyhow::Result<Self> {
        let jwks_uri = match &config.jwks_uri {
            Some(url) => Some(Target::parse(url, "oauth.jwks_uri")?),
            None => None,
        };
        Ok(Self {
            issuer: config.issuer.clone(),
            jwks_uri: tokio::sync::Mutex::new(jwks_uri),
            loaded: RwLock::new(None),
            last_try: tokio::sync::Mutex::new(None),
            min_refresh: config.jwks_min_refresh,
            max_age: config.jwks_max_age,
        })
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fetches the keys now, and then again every `max_age` (after a failure, every
    /// `min_refresh`), until the process ends. Logs the first outcome.
    pub(super) async fn keep_fresh(&self, first: impl FnOnce(Result<usize, String>)) {
        let mut report = Some(first);
        loop {
            let result = {
                let mut last = self.last_try.lock().await;
                let recent = last.is_some_and(|at| at.elapsed() < self.min_refresh);
                match self.current() {
                    // A token that arrived first has just had them fetched.
                    Some(loaded) if recent => Ok(loaded.keys.len()),
                    _ => {
                        *last = Some(Instant::now());
                        self.fetch().await
                    }
                }
            };
            let wait = if result.is_ok() {
                self.max_age
            } else {
                self.min_refresh
            };
            match report.take() {
                Some(report) => report(result),
                None => {
                    if let Err(e) = result {
                        tracing::warn!(issuer = %self.issuer, "fetching the signing keys failed: {e}");
                    }
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The key for a token signed with `alg`, naming `kid` (or none); a key we do not have
    /// makes the set be fetched again (see [`Self::refresh`]).
    pub(super) async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, Refusal> {
        if let Some(found) = self.current().as_deref().and_then(|l| pick(l, kid, alg)) {
            return found;
        }
        self.refresh().await;
        match self.current() {
            None => Err(Refusal::Unavailable(
                "the identity provider's signing keys could not be fetched".into(),
            )),
            Some(loaded) => pick(&loaded, kid, alg).unwrap_or_else(|| {
                Err(Refusal::Invalid(match kid {
                    Some(_) => "the token's signing key (kid) is not one of the issuer's keys",
                    None => "the token names no key (kid) and no single issuer key fits it",
                }))
            }),
        }
    }

    /// Fetches the keys again unless a fetch was tried within `min_refresh`: a flood of
    /// tokens with made-up `kid`s costs the issuer one request per interval, and requests
    /// waiting here while another fetches use what it fetched.
    async fn refresh(&self) {
        let mut last = self.last_try.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            tracing::warn!(issuer = %self.issuer, "fetching the signing keys failed: {e}");
        }
    }

    async fn fetch(&self) -> Result<usize, String> {
        let target = {
            let mut uri = self.jwks_uri.lock().await;
            match &*uri {
                Some(target) => target.clone(),
                None => uri.insert(discover(&self.issuer).await?).clone(),
            }
        };
        let document = target
            .get_json(FETCH_TIMEOUT, MAX_DOCUMENT)
            .await
            .map_err(|e| format!("JWKS {target:?}: {e}"))?;
        let set: JwkSet = serde_json::from_value(document)
            .map_err(|e| format!("JWKS {target:?} is not a JWK set: {e}"))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
        if keys.is_empty() {
            return Err(format!("JWKS {target:?} holds no usable signing key"));
        }
        let n = keys.len();
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Loaded { keys }));
        tracing::debug!(issuer = %self.issuer, keys = n, "signing keys loaded");
        Ok(n)
    }
}

/// A key from the set that can verify `alg`: by `kid`, or the only one that fits.
fn pick(
    loaded: &Loaded,
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<Result<Arc<DecodingKey>, Refusal>> {
    let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg) && k.key.family() == alg.family();
    match kid {
        Some(kid) => {
            let key = loaded.keys.iter().find(|k| k.kid.as_deref() == Some(kid))?;
            Some(if fits(&key) {
                Ok(key.key.clone())
            } else {
                Err(Refusal::Invalid(
                    "the token's algorithm does not match its signing key",
                ))
            })
        }
        None => {
            let mut fitting = loaded.keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Some(Ok(key.key.clone())),
                _ => None,
            }
        }
    }
}

/// A JWK we may verify with: a public signing key, never a shared secret.
fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.algorithm,
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
    ) {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::try_from(a).ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key: Arc::new(key),
    })
}

/// The issuer's `jwks_uri`, from its authorization server metadata (RFC 8414, path
/// inserted after `/.well-known/`), else from its OpenID configuration. The document must
/// name the same issuer (RFC 8414 §3.3), and the keys must be on https (or loopback).
async fn discover(issuer: &str) -> Result<Target, String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(slash) => trimmed.split_at(start + slash),
            None => (trimmed, ""),
        },
        None => return Err(format!("`{issuer}` is not a URL")),
    };
    let mut tried = Vec::new();
    for url in [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ] {
        let target = Target::parse(&url, "the issuer's metadata").map_err(|e| e.to_string())?;
        match target.get_json(FETCH_TIMEOUT, MAX_DOCUMENT).await {
            Ok(document) => return jwks_from(&document, issuer, &url),
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    Err(format!(
        "no metadata for the issuer `{issuer}` ({}); set oauth.jwks_uri",
        tried.join("; ")
    ))
}

fn jwks_from(document: &Value, issuer: &str, url: &str) -> Result<Target, String> {
    let named = document.get("issuer").and_then(Value::as_str);
    if named.map(|n| n.trim_end_matches('/')) != Some(issuer.trim_end_matches('/')) {
        return Err(format!(
            "{url} names the issuer {named:?}, not `{issuer}`; refusing its keys"
        ));
    }
    let jwks = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{url} has no jwks_uri"))?;
    crate::config::https_or_loopback("the issuer's jwks_uri", jwks).map_err(|e| e.to_string())?;
    Target::parse(jwks, "the issuer's jwks_uri").map_err(|e| e.to_string())
}
