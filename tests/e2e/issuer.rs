//! A test-local OAuth authorization server on 127.0.0.1: its keys generated here (ES256 with
//! ring, RS256 with `openssl`), its metadata at `/.well-known/oauth-authorization-server`, its
//! JWKS at `/jwks` (fetches counted), and tokens signed with any of its keys or with keys it
//! does not publish.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// The resource URI the gateways under test are configured with.
pub const RESOURCE: &str = "https://mcp.test.example/mcp";

/// A signing key and the `kid` it is known by.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub jwk: Value,
    /// The public key's raw bytes (an attacker has them: they are published).
    pub public: Vec<u8>,
}

impl SigningKey {
    pub fn es256(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        Self::new(
            kid,
            Algorithm::ES256,
            key,
            pair.public_key().as_ref().to_vec(),
        )
    }

    /// An RSA key made by `openssl` (PKCS#1 DER, as the crate takes it).
    pub fn rs256(kid: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("k.pem");
        let der = dir.path().join("k.der");
        crate::support::openssl(&[
            "genrsa",
            "-traditional",
            "-out",
            pem.to_str().unwrap(),
            "2048",
        ]);
        crate::support::openssl(&[
            "rsa",
            "-in",
            pem.to_str().unwrap(),
            "-traditional",
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let der = std::fs::read(der).unwrap();
        Self::new(kid, Algorithm::RS256, EncodingKey::from_rsa_der(&der), der)
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey, public: Vec<u8>) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        let jwk = serde_json::to_value(jwk).unwrap();
        Self {
            kid: kid.to_string(),
            alg,
            key,
            jwk,
            public,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.key).unwrap()
    }
}

pub struct Issuer {
    pub url: String,
    /// The key tokens are signed with by default (published).
    pub es: SigningKey,
    published: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Issuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let es = SigningKey::es256("es-1");
        let published = Arc::new(Mutex::new(vec![es.jwk.clone()]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (keys, count, issuer) = (published.clone(), fetches.clone(), url.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (keys, count, issuer) = (keys.clone(), count.clone(), issuer.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = match req.uri().path() {
                            "/.well-known/oauth-authorization-server" => {
                                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
                            }
                            "/jwks" => {
                                count.fetch_add(1, Ordering::SeqCst);
                                json!({"keys": *keys.lock().unwrap()})
                            }
                            _ => Value::Null,
                        };
                        let status = if body.is_null() { 404 } else { 200 };
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from(body.to_string())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            es,
            published,
            fetches,
        }
    }

    /// Adds `key` to the published JWKS (a key rotation).
    pub fn publish(&self, key: &SigningKey) {
        self.published.lock().unwrap().push(key.jwk.clone());
    }

    /// Claims that pass: this issuer, the gateway's resource, valid for five minutes.
    pub fn claims(&self, sub: &str, extra: Value) -> Value {
        let mut claims = json!({
            "iss": self.url,
            "aud": RESOURCE,
            "sub": sub,
            "iat": now(),
            "exp": now() + 300,
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    /// A valid token for `sub` with `extra` claims, signed with the published ES256 key.
    pub fn token(&self, sub: &str, extra: Value) -> String {
        self.es.sign(&self.claims(sub, extra))
    }

    /// `[oauth]` for a gateway that trusts this issuer.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[oauth]\nissuer = \"{}\"\nresource = \"{RESOURCE}\"\n{extra}\n",
            self.url
        )
    }
}

/// A token with `header` and `claims` as given and the signature `signature` (no signing).
pub fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(header),
        part(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
