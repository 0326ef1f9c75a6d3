//! JWT access tokens: verified once (signature with the issuer's key, algorithm allow-list,
//! `exp`/`nbf` with leeway, issuer, audience), then kept until they expire so that the same
//! token is never verified twice. Claims become the principal: its id from
//! `principal_claim`, its roles from `roles_claim`, every claim visible to policy.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwks::KeySet;
use super::{Caller, Refusal};
use crate::config::OAuthConfig;
use crate::policy::Principal;

/// Tokens kept verified at most; past it, expired ones go, and if none had, all of them.
const CACHE_MAX: usize = 10_000;

struct Verified {
    caller: Caller,
    /// `exp`, in seconds since the epoch.
    expires: u64,
}

pub(super) struct Verifier {
    config: OAuthConfig,
    pub(super) keys: KeySet,
    validation: Validation,
    cache: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Why a token failed, in words an agent's developer can act on (never the token).
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidAudience => "the token is not for this resource (aud)",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "the token has no exp claim",
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => "the token has no aud claim",
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => "the token has no iss claim",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
        ErrorKind::InvalidClaimFormat(_) => "a claim of the token has the wrong type",
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            "the token's algorithm does not match its signing key"
        }
        _ => "the token is malformed",
    }
}

/// The value at a dotted path of claims (`realm_access.roles`).
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// A list of strings, or one space-separated string (as `scope` is).
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

impl Verifier {
    pub(super) fn new(config: &OAuthConfig) -> anyhow::Result<Self> {
        let mut validation = Validation::new(config.algorithms[0]);
        validation.algorithms = config.algorithms.clone();
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        let mut audiences = vec![config.resource.clone()];
        audiences.extend(config.audiences.iter().cloned());
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Self {
            keys: KeySet::new(config)?,
            config: config.clone(),
            validation,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The caller a bearer token names, verified now or earlier.
    pub(super) async fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&digest)
            .cloned();
        if let Some(hit) = cached {
            if hit.expires + self.config.leeway.as_secs() > now() {
                return Ok(hit.caller.clone());
            }
            return Err(Refusal::Invalid("the token has expired"));
        }
        let verified = self.verify_now(token).await?;
        let caller = verified.caller.clone();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            let now = now();
            cache.retain(|_, v| v.expires > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, Arc::new(verified));
        Ok(caller)
    }

    async fn verify_now(&self, token: &str) -> Result<Verified, Refusal> {
        // `alg: none` and unknown algorithms fail here: the crate has no such algorithm.
        let header = decode_header(token).map_err(|_| {
            Refusal::Invalid("the token is not a JWT with a supported signature algorithm")
        })?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(Refusal::Invalid("the token's algorithm is not accepted"));
        }
        let key = self.keys.find(header.kid.as_deref(), header.alg).await?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| Refusal::Invalid(reason(e.kind())))?;
        let claims = data.claims;
        let id = claims
            .get(&self.config.principal_claim)
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or(Refusal::Invalid(
                "the token does not name its subject (the principal claim)",
            ))?
            .to_string();
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(Refusal::Invalid("the token has no exp claim"))?;
        let roles = words(claim_at(&claims, &self.config.roles_claim));
        let mut scopes: BTreeSet<String> = words(claims.get("scope")).into_iter().collect();
        scopes.extend(words(claims.get("scp")));
        Ok(Verified {
            caller: Caller {
                principal: Arc::new(Principal {
                    id,
                    roles,
                    claims,
                    authenticated_by: "oauth",
                }),
                scopes: Some(Arc::new(scopes)),
                subject: None,
            },
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_and_scopes_from_claims() {
        let Value::Object(claims) = json!({
            "roles": ["a", "b"],
            "realm_access": {"roles": ["r"]},
            "groups": "x y",
            "scope": "mcp files:write",
            "n": 1,
        }) else {
            unreachable!()
        };
        assert_eq!(words(claim_at(&claims, "roles")), ["a", "b"]);
        assert_eq!(words(claim_at(&claims, "realm_access.roles")), ["r"]);
        assert_eq!(words(claim_at(&claims, "groups")), ["x", "y"]);
        assert_eq!(words(claims.get("scope")), ["mcp", "files:write"]);
        assert!(words(claim_at(&claims, "n")).is_empty());
        assert!(words(claim_at(&claims, "missing.path")).is_empty());
    }
}
