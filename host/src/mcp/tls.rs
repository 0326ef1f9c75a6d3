//! TLS for the HTTP listener, for direct exposure without a proxy: rustls (ring, TLS 1.2 and
//! 1.3, ALPN `http/1.1`), the certificate chain and key from PEM files, loaded again when
//! either file changes. A certificate that fails to load keeps the last good one in service
//! (and the log says why); one that fails at start is a startup error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the certificate and key files are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(2);

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn load(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            acceptor: RwLock::new(load(cert, key)?),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the files again whenever either changes, for as long as the process runs.
    pub fn watch(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut seen = (stamp(&tls.cert), stamp(&tls.key));
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let now = (stamp(&tls.cert), stamp(&tls.key));
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&tls.cert, &tls.key) {
                    Ok(acceptor) => {
                        *tls.acceptor.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => tracing::error!(
                        "TLS certificate reload failed; the last good one stays in service: {e:#}"
                    ),
                }
            }
        });
    }
}
