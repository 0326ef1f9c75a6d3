//! The gateway's own outbound HTTP, to endpoints the operator configured: the approval webhook
//! and the OTLP collector. Never a tool's requests: those go through `egress`, under the call's
//! grants.
//!
//! One connection per request, HTTP/1.1, TLS (rustls with ring, the webpki roots) for
//! `https://`. The connection is driven inside the request's future, so a timeout around it
//! drops the connection too.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

pub const USER_AGENT: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// Where requests go, parsed once.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The `Host` header: the host, and the port if the URL gave one.
    pub host_header: String,
    /// The path and query, as sent on the request line.
    pub path: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header, self.path)
    }
}

impl Target {
    /// Parses `url` (an `http://` or `https://` URL without credentials); `setting` names it in
    /// errors, e.g. `webhook.url`.
    pub fn parse(url: &str, setting: &str) -> Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("{setting} is not a valid URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("{setting} must be an http:// or https:// URL"),
        };
        let authority = uri
            .authority()
            .with_context(|| format!("{setting} has no host"))?;
        if authority.as_str().contains('@') {
            bail!("{setting} must not hold credentials");
        }
        let host = authority.host();
        let host_header = match authority.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if tls {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| anyhow!("{setting}: `{host}` is not a valid TLS server name"))?;
            Some((tls_config()?, name))
        } else {
            None
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Self {
            host,
            port,
            host_header,
            path: if path.is_empty() { "/" } else { path }.to_string(),
            tls,
        })
    }

    /// Sends `request` (origin-form path, `Host` set by the caller) on a new connection and
    /// reads the answer's body, at most `max_body` bytes of it (more is an error); with
    /// `max_body` 0 the body is not read and the answer comes back as soon as its head does.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<Response<Bytes>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => exchange(TokioIo::new(tcp), request, max_body).await,
            Some((config, name)) => {
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {} failed: {e}", self.host))?;
                exchange(TokioIo::new(stream), request, max_body).await
            }
        }
    }
}

impl Target {
    /// `GET`s the target as JSON within `timeout`, reading at most `max_body` bytes: the
    /// parsed document, or why not (connection, status, size, syntax).
    pub async fn get_json(
        &self,
        timeout: std::time::Duration,
        max_body: usize,
    ) -> Result<serde_json::Value, String> {
        let request = Request::get(self.path.as_str())
            .header(http::header::HOST, self.host_header.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(timeout, self.send(request, max_body))
            .await
            .map_err(|_| format!("no answer within {} s", timeout.as_secs()))??;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        serde_json::from_slice(response.body()).map_err(|e| format!("not JSON: {e}"))
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Drives the connection in this future while the request is answered and its body read.
async fn exchange<T>(
    io: T,
    request: Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Response<Bytes>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let answer = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let (parts, body) = response.into_parts();
        if max_body == 0 {
            return Ok(Response::from_parts(parts, Bytes::new()));
        }
        let body = Limited::new(body, max_body)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    };
    tokio::pin!(conn, answer);
    tokio::select! {
        biased;
        answer = &mut answer => answer,
        // A server that answers and closes (`Connection: close`) ends the connection in the
        // same read that delivers the answer: the answer is there, take it.
        end = &mut conn => match end {
            Ok(()) => answer
                .await
                .map_err(|e| format!("connection closed before the answer ({e})")),
            Err(e) => Err(format!("HTTP: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn parses_urls() {
        for url in [
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "/relative",
        ] {
            assert!(Target::parse(url, "x.url").is_err(), "{url}");
        }
        let t = Target::parse("https://example.com", "x.url").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.host_header.as_str()),
            (443, "/", "example.com")
        );
        let t = Target::parse("http://[::1]:8080/h?a=b", "x.url").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/h?a=b")
        );
        assert_eq!(t.host_header, "[::1]:8080");
        assert_eq!(format!("{t:?}"), "http://[::1]:8080/h?a=b");
    }
}
