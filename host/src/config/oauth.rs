//! `[oauth]`: `/mcp` as an OAuth 2.1 resource server. JWT access tokens from one issuer,
//! verified against its JWKS, for this server's resource URI (RFC 8707 audience), with the
//! scopes a request needs. Static hashed tokens under `[principals]` keep working beside it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::grants::parse_duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OAuthFile {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    algorithms: Option<Vec<String>>,
    leeway: Option<String>,
    principal_claim: Option<String>,
    roles_claim: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    method_scopes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    tool_scopes: BTreeMap<String, Vec<String>>,
    scopes_supported: Option<Vec<String>>,
    jwks_min_refresh: Option<String>,
    jwks_max_age: Option<String>,
    resource_name: Option<String>,
}

/// The resource server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The authorization server: tokens' `iss` must equal it; its metadata names the JWKS.
    pub issuer: String,
    /// Where the issuer's keys are; `None`, found in its metadata (RFC 8414, then OpenID).
    pub jwks_uri: Option<String>,
    /// This server's resource URI (e.g. `https://mcp.example.com/mcp`): the audience tokens
    /// must name, and the `resource` of the protected resource metadata.
    pub resource: String,
    /// Other audiences accepted besides `resource`.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted; never `none`, never HMAC.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim that names the principal (default `sub`).
    pub principal_claim: String,
    /// The claim (a dotted path such as `realm_access.roles`) holding the roles: a list of
    /// strings, or one space-separated string.
    pub roles_claim: String,
    /// Scopes every request needs.
    pub scopes: Vec<String>,
    /// Scopes a JSON-RPC method needs (`tools/call`, `tools/list`, …).
    pub method_scopes: BTreeMap<String, Vec<String>>,
    /// Scopes a call of a tool needs, besides its method's.
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// Advertised in the protected resource metadata.
    pub scopes_supported: Vec<String>,
    /// The JWKS is fetched again for an unknown `kid` at most this often.
    pub jwks_min_refresh: Duration,
    /// The JWKS is fetched again when it is older than this.
    pub jwks_max_age: Duration,
    pub resource_name: String,
}

const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn algorithm(name: &str) -> Result<Algorithm> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| anyhow!("oauth.algorithms: `{name}` is not a JWS algorithm"))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        bail!(
            "oauth.algorithms: `{name}` is an HMAC algorithm; a resource server verifies with the issuer's public keys only"
        );
    }
    Ok(alg)
}

/// Refuses plain HTTP to anywhere but loopback: keys and metadata fetched in the clear could
/// be swapped on the way.
pub(crate) fn https_or_loopback(key: &str, url: &str) -> Result<()> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| anyhow!("{key}: `{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => bail!("{key}: `{url}` must be an https:// URL (http:// only on loopback)"),
    }
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration> {
    value.map_or(Ok(default), |v| {
        parse_duration(v).map_err(|e| anyhow!("oauth.{key}: {e}"))
    })
}

/// `None` when there is no `[oauth]` table (or it is empty).
pub(super) fn resolve(file: Option<OAuthFile>) -> Result<Option<OAuthConfig>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let issuer = file
        .issuer
        .ok_or_else(|| anyhow!("oauth.issuer is required (the authorization server's URL)"))?;
    https_or_loopback("oauth.issuer", &issuer)?;
    let resource = file.resource.ok_or_else(|| {
        anyhow!("oauth.resource is required (this server's URL, e.g. https://mcp.example.com/mcp)")
    })?;
    https_or_loopback("oauth.resource", &resource)?;
    if let Some(jwks) = &file.jwks_uri {
        https_or_loopback("oauth.jwks_uri", jwks)?;
    }
    let algorithms = match file.algorithms {
        Some(names) if names.is_empty() => bail!("oauth.algorithms must not be empty"),
        Some(names) => names.iter().map(|n| algorithm(n)).collect::<Result<_>>()?,
        None => DEFAULT_ALGORITHMS.to_vec(),
    };
    let leeway = duration("leeway", file.leeway.as_deref(), Duration::from_secs(30))?;
    if leeway > Duration::from_secs(300) {
        bail!("oauth.leeway must be at most 5m");
    }
    let jwks_min_refresh = duration(
        "jwks_min_refresh",
        file.jwks_min_refresh.as_deref(),
        Duration::from_secs(30),
    )?;
    let jwks_max_age = duration(
        "jwks_max_age",
        file.jwks_max_age.as_deref(),
        Duration::from_secs(3600),
    )?;
    if jwks_min_refresh < Duration::from_secs(1) {
        bail!(
            "oauth.jwks_min_refresh must be at least 1s: it is what bounds the fetches a flood of made-up key ids can cause"
        );
    }
    if jwks_max_age < jwks_min_refresh {
        bail!("oauth.jwks_max_age must be at least oauth.jwks_min_refresh");
    }
    let mut required: Vec<String> = file
        .scopes
        .iter()
        .chain(file.method_scopes.values().flatten())
        .chain(file.tool_scopes.values().flatten())
        .cloned()
        .collect();
    required.sort();
    required.dedup();
    for scope in &required {
        // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
        if scope.is_empty()
            || !scope
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        {
            bail!("oauth: `{scope}` is not a valid scope name");
        }
    }
    Ok(Some(OAuthConfig {
        scopes_supported: file.scopes_supported.unwrap_or(required),
        issuer,
        jwks_uri: file.jwks_uri,
        resource,
        audiences: file.audiences,
        algorithms,
        leeway,
        principal_claim: file.principal_claim.unwrap_or_else(|| "sub".into()),
        roles_claim: file.roles_claim.unwrap_or_else(|| "roles".into()),
        scopes: file.scopes,
        method_scopes: file.method_scopes,
        tool_scopes: file.tool_scopes,
        jwks_min_refresh,
        jwks_max_age,
        resource_name: file.resource_name.unwrap_or_else(|| "portcullis".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<OAuthConfig>> {
        resolve(Some(toml::from_str(text)?)).map_err(|e| anyhow!("{e:#}"))
    }

    const BASE: &str =
        "issuer = \"https://idp.example.com\"\nresource = \"https://mcp.example.com/mcp\"\n";

    #[test]
    fn defaults_and_scopes() {
        let c = parse(&format!(
            "{BASE}scopes = [\"mcp\"]\n[method_scopes]\n\"tools/call\" = [\"mcp:call\"]\n[tool_scopes]\nwrite_file = [\"files:write\", \"mcp\"]\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.principal_claim, "sub");
        assert_eq!(c.roles_claim, "roles");
        assert_eq!(c.leeway, Duration::from_secs(30));
        assert!(!c.algorithms.contains(&Algorithm::HS256));
        assert_eq!(c.scopes_supported, ["files:write", "mcp", "mcp:call"]);
    }

    #[test]
    fn refuses_what_would_weaken_verification() {
        for (text, needle) in [
            ("resource = \"https://m/mcp\"\n", "oauth.issuer is required"),
            ("issuer = \"https://i\"\n", "oauth.resource is required"),
            (
                "issuer = \"http://idp.example.com\"\nresource = \"https://m/mcp\"\n",
                "https://",
            ),
            (
                &format!("{BASE}algorithms = [\"HS256\"]\n"),
                "HMAC algorithm",
            ),
            (&format!("{BASE}algorithms = [\"none\"]\n"), "not a JWS"),
            (&format!("{BASE}algorithms = []\n"), "must not be empty"),
            (&format!("{BASE}leeway = \"1h\"\n"), "oauth.leeway"),
            (&format!("{BASE}scopes = [\"a b\"]\n"), "not a valid scope"),
            (&format!("{BASE}audience = \"x\"\n"), "unknown field"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        // Plain HTTP is fine on loopback (a test-local issuer).
        parse("issuer = \"http://127.0.0.1:9/\"\nresource = \"http://localhost:8080/mcp\"\n")
            .unwrap()
            .unwrap();
    }
}
