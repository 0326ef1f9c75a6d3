//! URLs and methods, split the way WASI HTTP wants them.

use std::fmt;

use super::HttpError;

/// The URL schemes the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://` (plain text; the grant must allow it).
    Http,
    /// `https://`.
    Https,
}

/// An `http` or `https` URL split the way WASI HTTP wants it. The fragment (`#...`) is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host` or `host:port` (an IPv6 host in brackets), as written.
    pub authority: String,
    /// The path and query, starting with `/` (`/` when the URL has no path).
    pub path_and_query: String,
}

impl Url {
    /// Parses `url`: `http://` or `https://`, a host with an optional port, then an optional
    /// path and query. Refuses other schemes, credentials (`user@host`), an empty host, a bad
    /// port, and spaces or control characters anywhere (percent-encode them).
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::invalid(format!("invalid URL `{url}`: {why}"));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "it contains whitespace or control characters (percent-encode them)",
            ));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected `http://` or `https://` followed by a host"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => {
                return Err(bad(&format!(
                    "scheme `{other}` is not supported (only http and https)"
                )));
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "credentials in URLs are not supported (the gateway injects credentials where the operator granted them)",
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if let Some(port) = port
            && !matches!(port.parse::<u16>(), Ok(p) if p != 0 && !port.starts_with('+'))
        {
            return Err(bad(&format!("`{port}` is not a port (1-65535)")));
        }
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }

    /// The URL as text (without a fragment).
    pub fn as_string(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the port is `None` when absent.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| "unclosed `[` in the host".to_string())?;
        let host = &rest[..close];
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("`[{host}]` is not an IPv6 address"));
        }
        return match &rest[close + 1..] {
            "" => Ok((host, None)),
            after => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected `{after}` after the IPv6 address")),
            },
        };
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '%')))
    {
        return Err(format!("`{c}` is not allowed in a host name"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("https://api.example.com:8443/v1/x?y=1#frag").unwrap();
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!(url.authority, "api.example.com:8443");
        assert_eq!(url.path_and_query, "/v1/x?y=1");
        assert_eq!(Url::parse("HTTP://h").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_and_query, "/?q");
        assert_eq!(
            Url::parse("http://[::1]:80/").unwrap().authority,
            "[::1]:80"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        let err = |u: &str| Url::parse(u).unwrap_err().message;
        assert!(err("ftp://h/").contains("only http and https"));
        assert!(err("h/path").contains("expected `http://`"));
        assert!(err("http://u:p@h/").contains("credentials"));
        assert!(err("http:///x").contains("host is empty"));
        assert!(err("http://h:0/").contains("not a port"));
        assert!(err("http://h:99999/").contains("not a port"));
        assert!(err("http://h/a b").contains("whitespace"));
        assert!(err("http://[::1/").contains("unclosed"));
    }
}
