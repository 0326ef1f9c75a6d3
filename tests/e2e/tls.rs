//! TLS on the HTTP listener with a test certificate (made by `openssl` here): a governed call
//! over HTTPS works, plain HTTP to the TLS port gets nothing served, and a certificate replaced
//! on disk is served to the next connection without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{ALICE, Options, http_server, post, raw_http, setup};
use crate::support::{SHA256_ABC, openssl};

/// A certificate for 127.0.0.1 and localhost, written to `cert` and `key`, issued by a new
/// test CA whose certificate is written to `ca` (what clients trust).
fn make_certificate(cert: &Path, key: &Path, ca: &Path, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (ca_key, csr, ext) = (
        dir.path().join("ca.key"),
        dir.path().join("leaf.csr"),
        dir.path().join("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let subject = format!("/CN={name} test CA");
    // A new P-256 key into `key`, and a request (`-x509`: a self-signed certificate) to `out`.
    let new_key = |key: &Path, out: &Path, subject: &str, x509: bool| {
        let (key, out) = (key.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ];
        args.extend(["-nodes", "-keyout", key, "-out", out, "-subj", subject]);
        if x509 {
            args.extend(["-x509", "-days", "1"]);
        }
        openssl(&args);
    };
    new_key(&ca_key, ca, &subject, true);
    new_key(key, &csr, "/CN=localhost", false);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
}

/// `request` over TLS to `addr`, trusting only `cert`: the whole answer, or the TLS error.
async fn https(addr: &str, cert: &Path, request: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn https_serves_calls_and_picks_up_a_renewed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let (ca, new_ca) = (certs.path().join("ca.pem"), certs.path().join("ca2.pem"));
    make_certificate(&cert, &key, &ca, "first");
    let http_extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let s = setup(Options {
        http_extra: &http_extra,
        rust_log: "portcullis=info",
        ..Options::default()
    });
    let server = http_server(&s).await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hash","arguments":{"text":"abc"}}}"#;
    let request = post(&server, ALICE, "", body);
    let answer = https(&server.addr(), &ca, &request).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(SHA256_ABC), "{answer}");
    // Plain HTTP to the TLS port: nothing is served.
    let plain = raw_http(&server, &request).await;
    assert!(
        !plain.contains(SHA256_ABC) && !plain.contains("200 OK"),
        "{plain}"
    );

    // Renewed on disk (from another CA): the next connection gets the new certificate.
    make_certificate(&cert, &key, &new_ca, "second");
    server.wait_for_log("TLS certificate reloaded").await;
    let answer = https(&server.addr(), &new_ca, &request).await.unwrap();
    assert!(answer.contains(SHA256_ABC), "{answer}");
    let stale = https(&server.addr(), &ca, &request).await;
    assert!(
        stale.is_err(),
        "the old certificate is still served: {stale:?}"
    );
    // A broken file keeps the last good certificate.
    let failures = || {
        let log = server.log.lock().unwrap();
        log.iter()
            .filter(|l| l.contains("TLS certificate reload failed"))
            .count()
    };
    let before = failures();
    std::fs::write(&key, "not a key").unwrap();
    for _ in 0..100 {
        if failures() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failures() > before, "the broken key was not noticed");
    let answer = https(&server.addr(), &new_ca, &request).await.unwrap();
    assert!(answer.contains(SHA256_ABC), "{answer}");
}
