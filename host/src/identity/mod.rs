//! Who is calling over HTTP, and whether they may send this request.
//!
//! A bearer token is either one of the static tokens configured under `[principals]` (looked
//! up by its SHA-256) or, with `[oauth]`, a JWT access token from the configured issuer
//! ([`token`], keys from [`jwks`]); no token at all is the anonymous principal if one is
//! configured. OAuth callers also need the scopes [`scopes`] asks of the request. Refusals
//! carry what RFC 6750 and RFC 9728 ask of a resource server: the status, and a
//! `WWW-Authenticate` challenge that points at the protected resource metadata this module
//! also serves. The token itself is never logged, never kept beyond its request (the cache
//! holds its digest), and never passed on — except to the operator's token endpoint, when a
//! grant asks for a token exchanged for the caller (`delegation`).

mod jwks;
mod scopes;

pub use scopes::OutOfReach;
mod token;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result};
use http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{Config, OAuthConfig};
use crate::delegation::SubjectToken;
use crate::policy::Principal;

/// `sha256:<hex>` of a bearer token, as stored in the configuration.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    /// The token's scopes (OAuth); `None` for static tokens and the anonymous principal,
    /// which scope rules do not apply to.
    pub scopes: Option<Arc<BTreeSet<String>>>,
    /// The OAuth access token itself, for this request only, when the gateway exchanges
    /// tokens for callers (`[token_exchange]`); it goes to the token endpoint and nowhere else.
    pub subject: Option<SubjectToken>,
}

/// Why a request is refused at the front door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header, and no anonymous principal.
    Missing,
    /// Not `Bearer <token>`.
    Malformed,
    /// A token that is neither a configured static token nor a valid access token.
    Invalid(&'static str),
    /// The token lacks `missing` of the scopes the request `needs`.
    InsufficientScope {
        missing: Vec<String>,
        needs: Vec<String>,
    },
    /// The request cannot be checked (the scope rules need its method).
    BadRequest(&'static str),
    /// The issuer's keys cannot be had: not the caller's fault, try again.
    Unavailable(String),
}

/// A refusal as the HTTP answer: status, `WWW-Authenticate` (if any) and a message.
pub struct Answer {
    pub status: StatusCode,
    pub challenge: Option<String>,
    pub message: String,
}

struct OAuth {
    config: OAuthConfig,
    verifier: token::Verifier,
    scopes: scopes::ScopeRules,
    /// The metadata document's URL, for challenges.
    metadata_url: String,
    /// The paths it is served at.
    metadata_paths: [String; 2],
    /// Whether callers' tokens are kept for their request, for token exchange.
    delegates: bool,
}

pub struct Identity {
    tokens: HashMap<String, Arc<Principal>>,
    anonymous: Option<Arc<Principal>>,
    oauth: Option<OAuth>,
}

/// The RFC 9728 metadata URL of `resource`: `/.well-known/oauth-protected-resource` inserted
/// between its authority and its path. The URL and the path it is served at.
fn metadata_location(resource: &str) -> Result<(String, String)> {
    let uri: http::Uri = resource.parse().context("oauth.resource")?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri.authority().context("oauth.resource has no host")?;
    let path = uri.path().trim_end_matches('/');
    let served = format!("/.well-known/oauth-protected-resource{path}");
    Ok((format!("{scheme}://{authority}{served}"), served))
}

/// `"…"` for a challenge parameter (RFC 7235 quoted-string; our texts have no quotes).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace(['"', '\\'], "'"))
}

impl Identity {
    pub fn new(config: &Config) -> Result<Self> {
        let mut tokens = HashMap::new();
        for (name, p) in &config.principals {
            let principal = Arc::new(config.principal(name, "token").context("principal")?);
            for hash in &p.token_hashes {
                tokens.insert(hash.to_ascii_lowercase(), principal.clone());
            }
        }
        let anonymous = match &config.http.anonymous {
            Some(name) => Some(Arc::new(
                config
                    .principal(name, "anonymous")
                    .with_context(|| format!("http.anonymous `{name}`"))?,
            )),
            None => None,
        };
        let oauth = match &config.oauth {
            None => None,
            Some(c) => {
                let (metadata_url, served) = metadata_location(&c.resource)?;
                Some(OAuth {
                    verifier: token::Verifier::new(c)?,
                    scopes: scopes::ScopeRules::new(c),
                    metadata_url,
                    metadata_paths: ["/.well-known/oauth-protected-resource".to_string(), served],
                    delegates: config.capabilities.exchange.is_some(),
                    config: c.clone(),
                })
            }
        };
        Ok(Self {
            tokens,
            anonymous,
            oauth,
        })
    }

    /// Fetches the issuer's keys now, so the first caller does not wait for them, and keeps
    /// them fresh until the process ends; a failure is logged, and the keys are fetched again
    /// when a token needs them. Returns at once without `[oauth]`.
    pub async fn keep_keys_fresh(&self) {
        if let Some(oauth) = &self.oauth {
            let c = &oauth.config;
            oauth
                .verifier
                .keys
                .keep_fresh(|first| match first {
                    Ok(n) => tracing::info!(
                        issuer = %c.issuer,
                        keys = n,
                        "OAuth resource server for {}",
                        c.resource
                    ),
                    Err(e) => tracing::error!(
                        issuer = %c.issuer,
                        "the issuer's signing keys could not be fetched (tokens are refused until they can): {e}"
                    ),
                })
                .await;
        }
    }

    /// The caller of a request with this `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Caller, Refusal> {
        let Some(value) = authorization else {
            return self
                .anonymous
                .clone()
                .map(|principal| Caller {
                    principal,
                    scopes: None,
                    subject: None,
                })
                .ok_or(Refusal::Missing);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Malformed)?;
        if let Some(principal) = self.tokens.get(&token_hash(token)) {
            return Ok(Caller {
                principal: principal.clone(),
                scopes: None,
                subject: None,
            });
        }
        match &self.oauth {
            Some(oauth) => {
                let mut caller = oauth.verifier.verify(token).await?;
                if oauth.delegates {
                    let expires = caller.principal.claims.get("exp").and_then(|v| v.as_u64());
                    caller.subject = Some(SubjectToken::new(token, expires));
                }
                Ok(caller)
            }
            None => Err(Refusal::Invalid("unknown token")),
        }
    }

    /// The tools `caller` lacks the scopes for (`tool_scopes`), hidden from its `tools/list`;
    /// `None` when no tool has scopes of its own.
    pub fn out_of_reach(&self, caller: &Caller) -> Option<OutOfReach> {
        match (&self.oauth, &caller.scopes) {
            (Some(oauth), Some(granted)) => oauth.scopes.out_of_reach(granted),
            _ => None,
        }
    }

    /// Whether `caller` has the scopes the request `body` needs.
    pub fn authorize(&self, caller: &Caller, body: &[u8]) -> Result<(), Refusal> {
        match (&self.oauth, &caller.scopes) {
            (Some(oauth), Some(granted)) => oauth.scopes.check(granted, body),
            _ => Ok(()),
        }
    }

    /// The protected resource metadata (RFC 9728), if `path` is where it is served.
    pub fn metadata(&self, path: &str) -> Option<String> {
        let oauth = self.oauth.as_ref()?;
        if !oauth.metadata_paths.iter().any(|p| p == path) {
            return None;
        }
        let c = &oauth.config;
        Some(
            json!({
                "resource": c.resource,
                "authorization_servers": [c.issuer],
                "scopes_supported": c.scopes_supported,
                "bearer_methods_supported": ["header"],
                "resource_name": c.resource_name,
            })
            .to_string(),
        )
    }

    /// The HTTP answer to `refusal`.
    pub fn answer(&self, refusal: &Refusal) -> Answer {
        let (status, error, message) = match refusal {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "unauthorized: send `Authorization: Bearer <token>`".to_string(),
            ),
            Refusal::Malformed => (
                StatusCode::UNAUTHORIZED,
                Some((
                    "invalid_request",
                    "the Authorization header is not `Bearer <token>`",
                )),
                "unauthorized: malformed Authorization header".to_string(),
            ),
            Refusal::Invalid(why) => (
                StatusCode::UNAUTHORIZED,
                Some(("invalid_token", *why)),
                format!("unauthorized: {why}"),
            ),
            Refusal::InsufficientScope { missing, .. } => (
                StatusCode::FORBIDDEN,
                Some((
                    "insufficient_scope",
                    "the token lacks a scope this request needs",
                )),
                format!(
                    "forbidden: the token lacks the scope{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(" ")
                ),
            ),
            Refusal::BadRequest(why) => {
                return Answer {
                    status: StatusCode::BAD_REQUEST,
                    challenge: None,
                    message: format!("bad request: {why}"),
                };
            }
            Refusal::Unavailable(why) => {
                return Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    challenge: None,
                    message: format!("unavailable: {why}; retry shortly"),
                };
            }
        };
        let Some(oauth) = &self.oauth else {
            return Answer {
                status,
                challenge: Some("Bearer".into()),
                message,
            };
        };
        let mut params = vec![format!("resource_metadata={}", quoted(&oauth.metadata_url))];
        if let Some((code, description)) = error {
            params.push(format!("error={}", quoted(code)));
            params.push(format!("error_description={}", quoted(description)));
        }
        let scope = match refusal {
            // The whole set, so that a client asking for a new token does not lose the rest.
            Refusal::InsufficientScope { needs, .. } => needs.join(" "),
            _ => oauth.scopes.every().join(" "),
        };
        if !scope.is_empty() {
            params.push(format!("scope={}", quoted(&scope)));
        }
        Answer {
            status,
            challenge: Some(format!("Bearer {}", params.join(", "))),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_path() {
        assert_eq!(
            metadata_location("https://mcp.example.com/mcp").unwrap(),
            (
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp".to_string(),
                "/.well-known/oauth-protected-resource/mcp".to_string()
            )
        );
        assert_eq!(
            metadata_location("http://127.0.0.1:8080/").unwrap().0,
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
    }
}
