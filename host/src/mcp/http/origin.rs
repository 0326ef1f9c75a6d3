//! Where a request comes from: the `Host` and `Origin` checks of the front door, done once,
//! before anything else (DNS rebinding, cross-origin browsers).

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::FrontDoor;

/// The name part of a `Host` value (`127.0.0.1:8080` → `127.0.0.1`, `[::1]:80` → `[::1]`,
/// `[::1]` → `[::1]`).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.ends_with(']') =>
        {
            name
        }
        _ => host,
    }
}

impl FrontDoor {
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host) || allowed.eq_ignore_ascii_case(name))
    }

    /// Whether `origin` is this server's own on a loopback address (`http://127.0.0.1:8080`
    /// with that `Host`): a page there was served by this address and port, which this
    /// gateway holds. A rebinding page has its own name in `Host` and `Origin`, which the
    /// `Host` check refuses. Names are accepted only as listed: `localhost` may resolve to
    /// another address where another app holds the same port, and other names can share an
    /// origin with other apps behind one proxy.
    fn own_origin(&self, origin: &str, host: &str) -> bool {
        let scheme = if self.secure { "https" } else { "http" };
        matches!(host_name(host), "127.0.0.1" | "[::1]")
            && origin
                .strip_prefix(scheme)
                .and_then(|rest| rest.strip_prefix("://"))
                .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
    }

    /// The one check of where a request comes from (DNS rebinding, cross-origin browsers):
    /// exactly one `Host`, in the allowed list; at most one `Origin`, in the allowed list or
    /// this server's own loopback origin ([`Self::own_origin`]);
    /// an origin-form request target (`/mcp`), never an absolute URL that would name another
    /// authority than the `Host` header. Nothing behind this checks again.
    pub(super) fn check_origin(
        &self,
        request: &Request<Incoming>,
    ) -> Result<(), (StatusCode, &'static str)> {
        let uri = request.uri();
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err((
                StatusCode::BAD_REQUEST,
                "bad request: the request target must be a path such as /mcp, not an absolute URL",
            ));
        }
        let mut hosts = request.headers().get_all(hyper::header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "bad request: send exactly one Host header",
            ));
        };
        let Some(host) = host.to_str().ok().filter(|host| self.host_allowed(host)) else {
            return Err((StatusCode::FORBIDDEN, "forbidden: Host not allowed"));
        };
        let mut origins = request.headers().get_all(hyper::header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => Ok(()),
            (Some(origin), None)
                if origin.to_str().is_ok_and(|origin| {
                    self.allowed_origins.iter().any(|o| o == origin)
                        || self.own_origin(origin, host)
                }) =>
            {
                Ok(())
            }
            _ => Err((StatusCode::FORBIDDEN, "forbidden: Origin not allowed")),
        }
    }
}
