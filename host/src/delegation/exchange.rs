//! One RFC 8693 token exchange request and its answer.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use zeroize::Zeroizing;

use super::ExchangeSpec;
use crate::outbound::{Target, USER_AGENT};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// An answer larger than this is refused.
const MAX_ANSWER: usize = 64 * 1024;
/// A longer issued token is refused (it goes into a header).
const MAX_TOKEN: usize = 16 * 1024;

/// A token the endpoint issued.
pub struct Issued {
    pub token: Zeroizing<String>,
    /// Seconds, if the endpoint said (RFC 8693 §2.2.1 recommends it).
    pub expires_in: Option<u64>,
}

/// The form body: the grant type, the subject token and what the token is for.
fn form(spec: &ExchangeSpec, subject: &str) -> Zeroizing<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", GRANT_TYPE)
        .append_pair("subject_token", subject)
        .append_pair("subject_token_type", ACCESS_TOKEN)
        .append_pair("requested_token_type", ACCESS_TOKEN);
    for (key, value) in [
        ("audience", &spec.audience),
        ("resource", &spec.resource),
        ("scope", &spec.scope),
    ] {
        if let Some(value) = value {
            form.append_pair(key, value);
        }
    }
    Zeroizing::new(form.finish())
}

/// `Basic` credentials (RFC 6749 §2.3.1: each part form-encoded first).
pub(super) fn basic(client_id: &str, secret: &str) -> Zeroizing<String> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = Zeroizing::new(format!("{}:{}", encode(client_id), encode(secret)));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

/// Text from the endpoint, made safe to show: short, printable, without `subject`.
fn shown(text: &str, subject: &str) -> String {
    let text = text.replace(subject, "[redacted]");
    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    text
}

/// Sends the exchange and reads the token from the answer.
pub async fn request(
    endpoint: &Target,
    client_id: &str,
    client_secret: &str,
    spec: &ExchangeSpec,
    subject: &str,
    timeout: Duration,
) -> Result<Issued, String> {
    let body = form(spec, subject);
    let authorization = basic(client_id, client_secret);
    let request = Request::post(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.host_header.as_str())
        .header(http::header::AUTHORIZATION, authorization.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| format!("building the request: {e}"))?;
    let answer = tokio::time::timeout(timeout, endpoint.send(request, MAX_ANSWER))
        .await
        .map_err(|_| {
            format!(
                "the token endpoint did not answer within {} ms",
                timeout.as_millis()
            )
        })?
        .map_err(|e| format!("the token endpoint could not be reached: {e}"))?;
    let status = answer.status();
    let document: Option<Value> = serde_json::from_slice(answer.body()).ok();
    if !status.is_success() {
        let field = |key: &str| {
            document
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .map(|s| shown(s, subject))
        };
        return Err(match (field("error"), field("error_description")) {
            (Some(error), Some(description)) => {
                format!("the token endpoint refused ({status}): {error}: {description}")
            }
            (Some(error), None) => format!("the token endpoint refused ({status}): {error}"),
            _ => format!("the token endpoint answered {status}"),
        });
    }
    let document = document.ok_or("the token endpoint's answer is not JSON")?;
    let issued = parse(&document)?;
    if issued.token.as_str() == subject {
        // Passed through: the caller's own token must not go upstream.
        return Err("the token endpoint answered with the caller's own token".into());
    }
    Ok(issued)
}

/// The token of a successful answer (RFC 8693 §2.2.1), checked for use in a header.
fn parse(document: &Value) -> Result<Issued, String> {
    let token = document
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    if token.len() > MAX_TOKEN || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(format!(
            "the issued token is not usable in a header (at most {MAX_TOKEN} bytes of visible ASCII)"
        ));
    }
    match document.get("token_type").and_then(Value::as_str) {
        None => {}
        // RFC 8693: `N_A` says the issued token is not an access token.
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(other) => {
            return Err(format!(
                "the token endpoint issued a `{}` token; only bearer tokens can be injected",
                shown(other, token)
            ));
        }
    }
    // RFC 8693 §2.2.1: what was issued. An ID token, a refresh token or a SAML assertion is
    // not what was asked for, and does not go upstream as a bearer token.
    match document.get("issued_token_type").and_then(Value::as_str) {
        // `…:jwt` is refused too: it names a format, and ID tokens are JWTs.
        None | Some(ACCESS_TOKEN) => {}
        Some(other) => {
            return Err(format!(
                "the token endpoint issued a `{}`, not an access token",
                shown(other, token)
            ));
        }
    }
    let expires_in = match document.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Ok(Issued {
        token: Zeroizing::new(token.to_string()),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_form_and_the_credentials_are_encoded() {
        let spec = ExchangeSpec {
            audience: Some("https://api.example".into()),
            resource: None,
            scope: Some("a b".into()),
        };
        let body = form(&spec, "tok&en=1");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert!(pairs.contains(&("grant_type".into(), GRANT_TYPE.into())));
        assert!(pairs.contains(&("subject_token".into(), "tok&en=1".into())));
        assert!(pairs.contains(&("subject_token_type".into(), ACCESS_TOKEN.into())));
        assert!(pairs.contains(&("audience".into(), "https://api.example".into())));
        assert!(pairs.contains(&("scope".into(), "a b".into())));
        assert!(!pairs.iter().any(|(k, _)| k == "resource"));
        // RFC 6749 §2.3.1: `:` in the id and `+` in the secret are form-encoded before base64.
        let header = basic("gw:1", "s+cret");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"gw%3A1:s%2Bcret");
    }

    #[test]
    fn answers_are_checked() {
        let ok = parse(&json!({"access_token": "abc.def", "token_type": "Bearer", "expires_in": 300, "issued_token_type": ACCESS_TOKEN})).unwrap();

        assert_eq!(ok.token.as_str(), "abc.def");
        assert_eq!(ok.expires_in, Some(300));
        assert_eq!(
            parse(&json!({"access_token": "x", "expires_in": "60"}))
                .unwrap()
                .expires_in,
            Some(60)
        );
        assert_eq!(
            parse(&json!({"access_token": "x", "token_type": "bearer"}))
                .unwrap()
                .expires_in,
            None
        );
        for (bad, why) in [
            (json!({}), "no access_token"),
            (json!({"access_token": ""}), "no access_token"),
            (json!({"access_token": "a b"}), "not usable in a header"),
            (json!({"access_token": "a\r\nX-Evil: 1"}), "not usable"),
            (
                json!({"access_token": "x", "token_type": "DPoP"}),
                "only bearer",
            ),
            (
                json!({"access_token": "x", "token_type": "N_A"}),
                "only bearer",
            ),
            (
                json!({"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
                "not an access token",
            ),
            (
                json!({"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
                "not an access token",
            ),
            (
                json!({"access_token": "a.b.c", "issued_token_type": "urn:ietf:params:oauth:token-type:jwt"}),
                "not an access token",
            ),
        ] {
            let e = parse(&bad).err().unwrap_or_else(|| panic!("{bad} passed"));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn endpoint_text_never_shows_the_subject_token() {
        let shown = shown("bad token eyJsecret.part\u{7}", "eyJsecret.part");
        assert_eq!(shown, "bad token [redacted]");
    }
}
