//! Connections to upstreams: TCP to the checked address, TLS (rustls) where the scheme says,
//! HTTP/1.1, and a pool that belongs to the gateway, keyed by the checked address and the TLS
//! server name, so a connection is only ever reused for the address it was opened to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;

use super::Body;

/// Where a pooled connection goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    /// `Some(server name)` for TLS.
    pub tls: Option<String>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Idle HTTP/1.1 connections, per key.
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    max_idle_per_key: usize,
    idle_timeout: Duration,
}

/// Keys kept at most; past it, empty and expired entries are swept.
const MAX_KEYS: usize = 1024;

impl Pool {
    pub fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_key,
            idle_timeout,
        }
    }

    /// An idle connection for `key` that is still open, if any.
    pub fn take(&self, key: &PoolKey) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < self.idle_timeout
                && !entry.sender.is_closed()
                && entry.sender.is_ready()
            {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Gives back a connection whose last response was read to the end.
    pub fn put(&self, key: PoolKey, sender: SendRequest<Body>) {
        if self.max_idle_per_key == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_KEYS && !idle.contains_key(&key) {
            let timeout = self.idle_timeout;
            idle.retain(|_, list| {
                list.retain(|e| e.since.elapsed() < timeout && !e.sender.is_closed());
                !list.is_empty()
            });
            if idle.len() >= MAX_KEYS {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() >= self.max_idle_per_key {
            list.remove(0);
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}

/// The TLS client configuration: the web PKI roots, plus the operator's CA bundle.
pub fn tls_config(ca_bundle: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if let Some(path) = ca_bundle {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("egress.ca_bundle {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("egress.ca_bundle {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "egress.ca_bundle {}: no PEM certificates in it",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("egress.ca_bundle {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Limits on one connection's HTTP framing.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// Opens a new connection to `key.addr` and returns its sender; the connection is driven by a
/// task of its own, which ends when the sender is dropped.
pub async fn open(
    key: &PoolKey,
    tls: &Arc<rustls::ClientConfig>,
    framing: Framing,
) -> Result<SendRequest<Body>, String> {
    let tcp = TcpStream::connect(key.addr)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", key.addr))?;
    let _ = tcp.set_nodelay(true);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder
        .max_headers(framing.max_headers)
        .max_buf_size(framing.max_header_bytes.max(8192));
    match &key.tls {
        None => handshake(&builder, TokioIo::new(tcp)).await,
        Some(name) => {
            let server_name = ServerName::try_from(name.clone())
                .map_err(|_| format!("`{name}` is not a valid TLS server name"))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(server_name, tcp)
                .await
                .map_err(|e| format!("TLS with {name} ({}) failed: {e}", key.addr))?;
            handshake(&builder, TokioIo::new(stream)).await
        }
    }
}

async fn handshake<T>(
    builder: &hyper::client::conn::http1::Builder,
    io: T,
) -> Result<SendRequest<Body>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (sender, connection) = builder
        .handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        // Ends with an error when the peer misbehaves or closes; nothing to report.
        let _ = connection.await;
    });
    Ok(sender)
}
