//! A test-local OAuth authorization server on 127.0.0.1: its keys generated here (ES256 with
//! ring, RS256 with `openssl`), its metadata at `/.well-known/oauth-authorization-server`, its
//! JWKS at `/jwks` (fetches counted), a token endpoint at `/token` that performs RFC 8693 token
//! exchanges (requests recorded), and tokens signed with any of its keys or with keys it does
//! not publish.

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
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The gateway's client at the issuer's token endpoint (`/token`).
pub const EXCHANGE_CLIENT: &str = "portcullis-gw";
pub const EXCHANGE_SECRET: &str = "exchange-client-secret-7d41c9";
/// An audience the token endpoint refuses to issue tokens for.
pub const REFUSED_AUDIENCE: &str = "https://refused.test.example";

/// An RFC 8693 token exchange at `/token`: the form (subject token and all) as received, and
/// whether the client authenticated correctly.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub form: std::collections::HashMap<String, String>,
    pub client_ok: bool,
}

/// The answer to a token exchange: for the right client and a token of ours, a token
/// `xchg.<sub>.<audience>.<n>` valid for five minutes; otherwise the RFC 6749 error.
fn exchange(
    issuer: &str,
    form: &std::collections::HashMap<String, String>,
    client_ok: bool,
    n: usize,
) -> (u16, Value) {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if !client_ok {
        return (401, json!({"error": "invalid_client"}));
    }
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token"
    {
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    let claims = field("subject_token")
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(claims) = claims.filter(|c| c["iss"] == issuer) else {
        return (
            400,
            json!({"error": "invalid_grant", "error_description": "the subject token is not ours"}),
        );
    };
    if field("audience") == REFUSED_AUDIENCE {
        return (
            400,
            json!({"error": "invalid_target", "error_description": "no tokens for that audience"}),
        );
    }
    let sub = claims["sub"].as_str().unwrap_or("-");
    (
        200,
        json!({
            "access_token": format!("xchg.{sub}.{}.{n}", field("audience")),
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 300,
        }),
    )
}

impl Issuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let es = SigningKey::es256("es-1");
        let published = Arc::new(Mutex::new(vec![es.jwk.clone()]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let (keys, count, issuer, seen) = (
            published.clone(),
            fetches.clone(),
            url.clone(),
            exchanges.clone(),
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{EXCHANGE_CLIENT}:{EXCHANGE_SECRET}"))
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (keys, count, issuer, seen, basic) = (
                    keys.clone(),
                    count.clone(),
                    issuer.clone(),
                    seen.clone(),
                    basic.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (keys, count, issuer, seen, basic) = (
                            keys.clone(),
                            count.clone(),
                            issuer.clone(),
                            seen.clone(),
                            basic.clone(),
                        );
                        async move {
                            let (status, body) = match req.uri().path() {
                                "/.well-known/oauth-authorization-server" => (
                                    200,
                                    json!({
                                        "issuer": issuer,
                                        "jwks_uri": format!("{issuer}/jwks"),
                                        "token_endpoint": format!("{issuer}/token"),
                                    }),
                                ),
                                "/jwks" => {
                                    count.fetch_add(1, Ordering::SeqCst);
                                    (200, json!({"keys": *keys.lock().unwrap()}))
                                }
                                "/token" if req.method() == hyper::Method::POST => {
                                    let client_ok = req
                                        .headers()
                                        .get(hyper::header::AUTHORIZATION)
                                        .is_some_and(|v| v.as_bytes() == basic.as_bytes());
                                    let bytes = http_body_util::BodyExt::collect(req.into_body())
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    let form: std::collections::HashMap<String, String> =
                                        form_urlencoded::parse(&bytes).into_owned().collect();
                                    let n = {
                                        let mut seen = seen.lock().unwrap();
                                        seen.push(Exchange {
                                            form: form.clone(),
                                            client_ok,
                                        });
                                        seen.len() - 1
                                    };
                                    exchange(&issuer, &form, client_ok, n)
                                }
                                _ => (404, Value::Null),
                            };
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from(body.to_string())));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(response)
                        }
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
            exchanges,
        }
    }

    /// The token exchanges received so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap().clone()
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

/// `scripts/dev-issuer serve` on a free port, as the README runs it: the script's path, the
/// process (killed when dropped) and its URL.
pub async fn dev_issuer() -> (std::path::PathBuf, tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let script = crate::support::root().join("scripts/dev-issuer");
    let mut issuer = tokio::process::Command::new(&script)
        .args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("scripts/dev-issuer");
    let mut lines = tokio::io::BufReader::new(issuer.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("dev issuer URL");
    let url = line.trim_start_matches("dev issuer at ").to_string();
    (script, issuer, url)
}
