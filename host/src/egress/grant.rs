//! The `http` grant: what one call may send, to where.
//!
//! ```json
//! {"host": "deploy.internal", "schemes": ["https"], "ports": [443], "methods": ["GET", "POST"],
//!  "paths": ["/v1/"], "allow_private": ["10.20.0.0/16"],
//!  "inject": {"header": "Authorization", "secret": "DEPLOY_TOKEN", "format": "Bearer {}"}}
//! ```
//!
//! A grant is checked once when the call is prepared ([`HttpRule::compile`]) and then matched
//! against every request of the call ([`match_request`]).

use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::address::{Host, parse_host};
use super::ranges::canonical;
use crate::delegation::ExchangeSpec;

/// An outbound HTTP permission, as a decision (or `portcullis run --grant-http`) states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `api.example.com`, `*.example.com` (any name below it, not itself), or a numeric
    /// address (`10.0.0.5`, `[fd00::1]`).
    pub host: String,
    /// `https` (the default) and/or `http`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes: Vec<String>,
    /// Default: the schemes' default ports (443, 80).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Default: `GET` and `HEAD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path prefixes (`/v1/`); default: any path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Addresses or CIDRs in the deny ranges that this grant may nevertheless connect to (an
    /// internal service). A numeric `host` names its own address and needs no entry here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<String>,
    /// A header the gateway adds to every request this grant matches, from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject: Option<Inject>,
}

/// A credential added on the way out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    pub header: String,
    /// The name of a configured secret; or, with `exchange`, none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// Instead of a secret: a token the gateway exchanges the caller's access token for
    /// (RFC 8693; see `delegation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<ExchangeSpec>,
    /// The header value, with `{}` where the secret goes. Default: `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// The host part of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Host),
    /// `*.example.com`: names ending in `.example.com`.
    Suffix(String),
}

impl HostPattern {
    pub fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Self::Exact(want), got) => want == got,
            (Self::Suffix(suffix), Host::Name(name)) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
            (Self::Suffix(_), Host::Ip(_)) => false,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(suffix) = text.strip_prefix("*.") {
            return match parse_host(suffix)? {
                Host::Name(name) if name.contains('.') => Ok(Self::Suffix(name)),
                Host::Name(_) => Err(format!(
                    "`{text}`: a wildcard needs at least two labels after `*.` (e.g. `*.example.com`)"
                )),
                Host::Ip(_) => Err(format!(
                    "`{text}`: a wildcard cannot cover numeric addresses"
                )),
            };
        }
        if text.contains('*') {
            return Err(format!(
                "`{text}`: `*` may only appear as a leading `*.` label"
            ));
        }
        parse_host(text).map(Self::Exact)
    }
}

/// The injection of a compiled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectRule {
    pub header: HeaderName,
    /// The call's secret that holds the value: a configured one, or the name of the exchanged
    /// token ([`ExchangeSpec::name`]).
    pub secret: String,
    /// Where the value comes from, if it is exchanged for the caller.
    pub exchange: Option<ExchangeSpec>,
    /// Text before and after the secret.
    pub before: String,
    pub after: String,
}

/// A checked grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRule {
    pub host: HostPattern,
    pub https: bool,
    pub http: bool,
    pub ports: Vec<u16>,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    pub allow_private: Vec<IpNet>,
    pub inject: Option<InjectRule>,
    /// The grant as written, for messages.
    pub spec: String,
}

/// Headers an injection may not set: they frame or route the request.
const NOT_INJECTABLE: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

impl HttpRule {
    pub fn compile(grant: &HttpGrant) -> Result<Self, String> {
        let spec = grant.host.clone();
        let fail = |msg: String| format!("http grant `{spec}`: {msg}");
        let host = HostPattern::parse(&grant.host).map_err(&fail)?;
        let (mut https, mut http) = (grant.schemes.is_empty(), false);
        for scheme in &grant.schemes {
            match scheme.to_ascii_lowercase().as_str() {
                "https" => https = true,
                "http" => http = true,
                other => return Err(fail(format!("scheme `{other}` is not http or https"))),
            }
        }
        let mut ports = grant.ports.clone();
        if ports.contains(&0) {
            return Err(fail("port 0 is not a port".into()));
        }
        if ports.is_empty() {
            if https {
                ports.push(443);
            }
            if http {
                ports.push(80);
            }
        }
        let mut methods = Vec::new();
        for method in &grant.methods {
            let upper = method.to_ascii_uppercase();
            if http::Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
                return Err(fail(format!("`{method}` is not an HTTP method")));
            }
            if upper == "CONNECT" {
                return Err(fail("CONNECT (tunnelling) cannot be granted".into()));
            }
            methods.push(upper);
        }
        if methods.is_empty() {
            methods = vec!["GET".into(), "HEAD".into()];
        }
        for path in &grant.paths {
            if !path.starts_with('/') || clean_path(path).is_none() {
                return Err(fail(format!(
                    "path prefix `{path}` must start with `/` and contain no `.`/`..` segments, `\\` or encoded `/`"
                )));
            }
        }
        let mut allow_private = Vec::new();
        for entry in &grant.allow_private {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match parse_host(entry) {
                    Ok(Host::Ip(ip)) => IpNet::from(canonical(ip)),
                    _ => {
                        return Err(fail(format!(
                            "allow_private entry `{entry}` is not an address or CIDR"
                        )));
                    }
                },
            };
            allow_private.push(net.trunc());
        }
        if let HostPattern::Exact(Host::Ip(ip)) = &host {
            allow_private.push(IpNet::from(canonical(*ip)));
        }
        let inject = match &grant.inject {
            None => None,
            Some(inject) => Some(compile_inject(inject).map_err(&fail)?),
        };
        if let Some(resource) = inject
            .as_ref()
            .and_then(|i| i.exchange.as_ref())
            .and_then(|e| e.resource.as_deref())
        {
            // RFC 8707: the token is for the resource at that URI; it goes there and nowhere
            // else (a logical `audience` names no host, so the grant's host is all there is).
            let at = resource
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(|h| parse_host(h.trim_matches(['[', ']']))));
            if !matches!(at, Some(Ok(ref h)) if host.matches(h)) {
                return Err(fail(format!(
                    "inject.exchange.resource `{resource}` is not on this grant's host: a token for a resource goes only to that resource"
                )));
            }
        }
        Ok(Self {
            host,
            https,
            http,
            ports,
            methods,
            paths: grant.paths.clone(),
            allow_private,
            inject,
            spec,
        })
    }

    /// Whether this grant lets the request connect to `ip`, although it is in a deny range.
    pub fn allows_private(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_private.iter().any(|net| net.contains(&ip))
    }
}

fn compile_inject(inject: &Inject) -> Result<InjectRule, String> {
    let header = HeaderName::from_bytes(inject.header.as_bytes())
        .map_err(|_| format!("inject header `{}` is not a header name", inject.header))?;
    if NOT_INJECTABLE.contains(&header.as_str()) {
        return Err(format!("inject header `{header}` cannot be injected"));
    }
    let secret = match (&inject.exchange, inject.secret.is_empty()) {
        (None, true) => return Err("inject needs a `secret` name or an `exchange`".into()),
        (Some(_), false) => {
            return Err("inject takes a `secret` or an `exchange`, not both".into());
        }
        (None, false) => inject.secret.clone(),
        (Some(spec), true) => {
            spec.check()?;
            spec.name()
        }
    };
    let format = inject.format.as_deref().unwrap_or("{}");
    let Some((before, after)) = format.split_once("{}") else {
        return Err(format!(
            "inject format `{format}` has no `{{}}` for the secret"
        ));
    };
    if after.contains("{}") {
        return Err(format!("inject format `{format}` has more than one `{{}}`"));
    }
    Ok(InjectRule {
        header,
        secret,
        exchange: inject.exchange.clone(),
        before: before.to_string(),
        after: after.to_string(),
    })
}

/// A path with no `.`/`..` segments (plain or percent-encoded), backslashes or encoded slashes:
/// one meaning for the gateway and for the server. Returns the path without its query.
pub fn clean_path(path_and_query: &str) -> Option<&str> {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let lower = path.to_ascii_lowercase();
    if path.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
    let dotty = lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    (!dotty).then_some(path)
}

/// One outbound request, as the guest made it (host already in its one spelling).
pub struct RequestFacts<'a> {
    pub https: bool,
    pub host: &'a Host,
    pub port: u16,
    pub method: &'a str,
    pub path_and_query: &'a str,
}

/// The first rule that permits the request, or the most specific reason none does.
pub fn match_request<'r>(
    rules: &'r [HttpRule],
    req: &RequestFacts<'_>,
) -> Result<&'r HttpRule, String> {
    let scheme = if req.https { "https" } else { "http" };
    let for_host: Vec<&HttpRule> = rules.iter().filter(|r| r.host.matches(req.host)).collect();
    if for_host.is_empty() {
        return Err(if rules.is_empty() {
            "this call has no http grant".to_string()
        } else {
            let granted: Vec<&str> = rules.iter().map(|r| r.spec.as_str()).collect();
            format!(
                "host {} is not granted (granted: {})",
                req.host,
                granted.join(", ")
            )
        });
    }
    let mut reason = String::new();
    for rule in &for_host {
        let problem = if !(if req.https { rule.https } else { rule.http }) {
            Some(format!(
                "scheme {scheme} is not granted for host {} (granted: {})",
                req.host,
                [("https", rule.https), ("http", rule.http)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else if !rule.ports.contains(&req.port) {
            Some(format!(
                "port {} is not granted for host {} (granted: {})",
                req.port,
                req.host,
                join(&rule.ports)
            ))
        } else if !rule.methods.iter().any(|m| m == req.method) {
            Some(format!(
                "method {} is not granted for host {} (granted: {})",
                req.method,
                req.host,
                rule.methods.join(", ")
            ))
        } else if !rule.paths.is_empty() && !path_allowed(&rule.paths, req.path_and_query) {
            Some(format!(
                "path `{}` is not under a granted prefix for host {} (granted: {})",
                req.path_and_query.split('?').next().unwrap_or(""),
                req.host,
                rule.paths.join(", ")
            ))
        } else {
            None
        };
        match problem {
            None => return Ok(rule),
            Some(p) if reason.is_empty() => reason = p,
            Some(_) => {}
        }
    }
    Err(reason)
}

fn path_allowed(prefixes: &[String], path_and_query: &str) -> bool {
    let Some(path) = clean_path(path_and_query) else {
        return false;
    };
    prefixes.iter().any(|prefix| {
        path == prefix
            || (path.starts_with(prefix.as_str())
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
    })
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses the `--grant-http` command-line form: the JSON of one grant, or the short form
/// `[SCHEME://]HOST[:PORT][/PATH-PREFIX][,METHOD...]`, e.g. `http://127.0.0.1:8091/v1/,GET,POST`.
pub fn parse_cli_grant(spec: &str) -> Result<HttpGrant, String> {
    if spec.trim_start().starts_with('{') {
        return serde_json::from_str(spec).map_err(|e| format!("--grant-http `{spec}`: {e}"));
    }
    let mut parts = spec.split(',');
    let target = parts.next().unwrap_or("");
    let methods: Vec<String> = parts.map(str::to_string).collect();
    let (schemes, rest) = match target.split_once("://") {
        Some((scheme, rest)) => (vec![scheme.to_string()], rest),
        None => (Vec::new(), target),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    let (host, port) = split_port(authority).map_err(|e| format!("--grant-http `{spec}`: {e}"))?;
    Ok(HttpGrant {
        host: host.to_string(),
        schemes,
        ports: port.into_iter().collect(),
        methods,
        paths: path.into_iter().collect(),
        allow_private: Vec::new(),
        inject: None,
    })
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => match authority[end + 1..].strip_prefix(':') {
                Some(port) => (&authority[..=end], Some(port)),
                None if end + 1 == authority.len() => (authority, None),
                None => return Err(format!("`{authority}` is not host[:port]")),
            },
            None => return Err(format!("`{authority}`: unclosed `[`")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && n.to_string() == p)
                .ok_or_else(|| format!("`{p}` is not a port"))?,
        ),
    };
    Ok((host, port))
}

#[cfg(test)]
#[path = "grant_tests.rs"]
mod tests;
