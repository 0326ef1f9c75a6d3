//! Sessions for clients before MCP 2026-07-28, which expect them: an `initialize` of an older
//! revision opens one (rmcp's local session manager: answers as SSE streams, the GET stream,
//! `DELETE` to close), and requests carrying its `Mcp-Session-Id` go to it. Everything else is
//! served statelessly, as before — 2026-07-28 requests, and older ones that never initialized.
//!
//! A session id is random (a v4 UUID) and bound to the principal that opened it: another
//! principal presenting it gets the same 404 as for an id that never existed, so an id that
//! leaks is worth nothing without its owner's credentials. Sessions are bounded per principal
//! (a new one closes that principal's least recently used one: many clients never send
//! `DELETE`) and in all (a new one gets 503: one principal cannot close another's), and are
//! closed after `session_idle_timeout` without a request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;

use super::Body;
use super::reply::{busy_response, plain};
use crate::config::HttpConfig;
use crate::gate::{Gateway, Transport};
use crate::mcp::Handler;
use crate::policy::Principal;

const SESSION_HEADER: &str = "mcp-session-id";

/// One session's holder ([`owner`]) and its last use.
struct Holder {
    by: Arc<str>,
    used: Instant,
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Stateless,
    Session,
    /// A session id this principal does not hold (or that never existed).
    Unknown,
}

pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    service: StreamableHttpService<Handler, LocalSessionManager>,
    /// Session id → who opened it, and when it was last used.
    owners: Mutex<HashMap<String, Holder>>,
    max: usize,
    per_principal: usize,
    /// Closes requests' streams open too long, if `sse_poll_after` is set.
    poller: Option<super::poll::Poller>,
}

/// Who holds a session: the principal, and how it was authenticated (a token's `alice` is not
/// an OAuth subject `alice`).
fn owner(principal: &Principal) -> Arc<str> {
    format!("{}:{}", principal.authenticated_by, principal.id).into()
}

/// Whether `body` is an `initialize` of a revision before 2026-07-28 (or of none: rmcp
/// answers that).
fn opens_session(body: &[u8]) -> bool {
    if super::precheck::method(body).as_deref() != Some("initialize") {
        return false;
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    message
        .pointer("/params/protocolVersion")
        .and_then(Value::as_str)
        .is_none_or(|version| version < rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

pub fn is_sse(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

impl Sessions {
    pub fn new(gateway: Arc<Gateway>, http: &HttpConfig, base: StreamableHttpServerConfig) -> Self {
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(http.session_idle_timeout);
        manager.session_config.sse_retry = Some(http.sse_retry);
        let manager = Arc::new(manager);
        let mut config = base;
        config.legacy_session_mode = true;
        config.json_response = false;
        config.sse_retry = Some(http.sse_retry);
        let service = StreamableHttpService::new(
            move || Ok(Handler::new(gateway.clone(), None, Transport::Http).in_session()),
            manager.clone(),
            config,
        );
        Self {
            manager: manager.clone(),
            service,
            owners: Mutex::default(),
            max: http.max_sessions,
            per_principal: http.max_sessions_per_principal,
            poller: http.sse_poll_after.map(|after| super::poll::Poller {
                manager: manager.clone(),
                after,
                retry: http.sse_retry,
            }),
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Holder>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the request of `principal` with these `parts` and `body` goes.
    pub fn route(&self, parts: &Parts, body: &[u8], principal: &Principal) -> Route {
        if let Some(id) = parts.headers.get(SESSION_HEADER) {
            let mut owners = self.owners();
            let held = id.to_str().ok().and_then(|id| owners.get_mut(id));
            let owned = held.is_some_and(|held| {
                let owned = held.by == owner(principal);
                if owned {
                    held.used = Instant::now();
                }
                owned
            });
            return if owned {
                Route::Session
            } else {
                Route::Unknown
            };
        }
        // A 2026-07-28 request says so in its header: its body need not be looked at.
        let current = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str());
        if !current && parts.method == hyper::Method::POST && opens_session(body) {
            return Route::Session;
        }
        Route::Stateless
    }

    /// Serves a request routed to a session (an `initialize` opening one, or one carrying the
    /// id of a session `principal` holds).
    pub async fn handle(
        &self,
        request: Request<Full<Bytes>>,
        principal: &Principal,
    ) -> Response<Body> {
        let held = request
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let closing = request.method() == hyper::Method::DELETE;
        let post = request.method() == hyper::Method::POST;
        let response = self.service.handle(request).await;
        match held {
            Some(id)
                if response.status() == StatusCode::NOT_FOUND
                    || closing && response.status().is_success() =>
            {
                self.owners().remove(&id);
                response
            }
            Some(id) => match &self.poller {
                Some(poller) if post && is_sse(&response) => poller.watch(id, response),
                _ => response,
            },
            None => {
                let Some(id) = response
                    .headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                else {
                    return response;
                };
                self.adopt(id, owner(principal), response).await
            }
        }
    }

    /// Records `owner` as the holder of the session just opened, closing the owner's least
    /// recently used session when it holds as many as it may; refuses (and closes the new
    /// one) when there are as many sessions as there may be in all.
    async fn adopt(&self, id: String, owner: Arc<str>, response: Response<Body>) -> Response<Body> {
        let live: HashSet<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        let (evict, full) = {
            let mut owners = self.owners();
            // Sessions rmcp closed (idle, never initialized) are forgotten here.
            owners.retain(|session, _| live.contains(session));
            let mine: Vec<(&String, &Holder)> =
                owners.iter().filter(|(_, h)| h.by == owner).collect();
            let evict = (mine.len() >= self.per_principal)
                .then(|| {
                    mine.iter()
                        .min_by_key(|(_, h)| h.used)
                        .map(|(id, _)| (*id).clone())
                })
                .flatten();
            if let Some(old) = &evict {
                owners.remove(old);
            }
            let full = owners.len() >= self.max;
            if !full {
                let used = Instant::now();
                owners.insert(id.clone(), Holder { by: owner, used });
            }
            (evict, full)
        };
        if let Some(old) = evict {
            tracing::debug!("closing the least recently used session of a principal at its limit");
            let _ = self.manager.close_session(&old.into()).await;
        }
        if !full {
            return response;
        }
        let _ = self.manager.close_session(&id.into()).await;
        busy_response("busy: too many open MCP sessions; retry later")
    }

    /// The answer to a request naming a session its principal does not hold.
    pub fn unknown() -> Response<Body> {
        plain(StatusCode::NOT_FOUND, "Not Found: Session not found")
    }
}
