//! The exchange client against a token endpoint on loopback: what it sends, what it caches,
//! and that concurrent calls share one exchange.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::*;
use crate::secrets::Fixed;

const CLIENT_SECRET: &str = "client-secret-5f2a";

/// A token endpoint: checks the client and the form, issues `issued:<subject>:<audience>:<n>`
/// valid for `expires_in` (none if negative), refuses the audience `nobody`.
async fn endpoint(expires_in: i64, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let (url, count, _) = serve(expires_in, delay).await;
    (url, count)
}

/// [`endpoint`], also counting the requests that arrived (before its `delay`).
async fn serve(expires_in: i64, delay: Duration) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let arrivals = Arc::new(AtomicUsize::new(0));
    let (seen, arrived) = (count.clone(), arrivals.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, arrived) = (seen.clone(), arrived.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (seen, arrived) = (seen.clone(), arrived.clone());
                    async move {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let auth = req.headers()[http::header::AUTHORIZATION]
                            .to_str()
                            .unwrap()
                            .to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let form: HashMap<String, String> =
                            form_urlencoded::parse(&body).into_owned().collect();
                        tokio::time::sleep(delay).await;
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        let expected = super::exchange::basic("gw", CLIENT_SECRET);
                        let (status, answer) = if auth != expected.as_str() {
                            (401, json!({"error": "invalid_client"}))
                        } else if form["audience"] == "nobody" {
                            (
                                400,
                                json!({"error": "invalid_target", "error_description": format!("no audience nobody for {}", form["subject_token"])}),
                            )
                        } else if form["audience"] == "echo" {
                            (
                                200,
                                json!({"access_token": form["subject_token"], "token_type": "Bearer"}),
                            )
                        } else {
                            let mut answer = json!({
                                "access_token": format!("issued:{}:{}:{n}", form["subject_token"], form["audience"]),
                                "token_type": "Bearer",
                                "issued_token_type": form["requested_token_type"],
                            });
                            if expires_in >= 0 {
                                answer["expires_in"] = json!(expires_in);
                            }
                            (200, answer)
                        };
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
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
    (url, count, arrivals)
}

fn delegation(url: &str, secret: &'static str) -> Delegation {
    within(url, secret, Duration::from_secs(5))
}

fn within(url: &str, secret: &'static str, timeout: Duration) -> Delegation {
    let (secrets, _) = Secrets::load(vec![("EXCHANGE".into(), Box::new(Fixed(secret)))]).unwrap();
    let config = ExchangeConfig {
        token_endpoint: url.to_string(),
        client_id: "gw".into(),
        client_secret: "EXCHANGE".into(),
        timeout,
        refresh_before: Duration::from_secs(30),
        max_cached: 100,
        ceiling: ExchangeCeiling::default(),
    };
    Delegation::new(&config, &secrets).unwrap()
}

fn spec(audience: &str) -> ExchangeSpec {
    ExchangeSpec {
        audience: Some(audience.into()),
        ..ExchangeSpec::default()
    }
}

async fn one(d: &Delegation, spec: &ExchangeSpec, subject: &SubjectToken) -> String {
    let tokens = d.tokens(&[spec], Some(subject)).await.unwrap();
    assert_eq!(tokens[0].0, spec.name());
    tokens[0].1.to_string()
}

#[tokio::test]
async fn tokens_are_cached_per_subject_and_grant_until_shortly_before_they_expire() {
    let (url, count) = endpoint(300, Duration::ZERO).await;
    let d = delegation(&url, CLIENT_SECRET);
    let (ada, bo) = (
        SubjectToken::new("ada-token", None),
        SubjectToken::new("bo-token", None),
    );
    let api = spec("https://api");
    let first = one(&d, &api, &ada).await;
    assert_eq!(first, "issued:ada-token:https://api:0");
    assert_eq!(one(&d, &api, &ada).await, first, "not cached");
    assert_eq!(one(&d, &api, &bo).await, "issued:bo-token:https://api:1");
    assert_eq!(
        one(&d, &spec("https://other"), &ada).await,
        "issued:ada-token:https://other:2"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // A token that expires within `refresh_before`, or says nothing of when, is not kept.
    for expires_in in [20, -1] {
        let (url, count) = endpoint(expires_in, Duration::ZERO).await;
        let d = delegation(&url, CLIENT_SECRET);
        one(&d, &api, &ada).await;
        one(&d, &api, &ada).await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "expires_in {expires_in}");
    }
}

#[tokio::test]
async fn concurrent_calls_of_one_caller_share_one_exchange() {
    let (url, count) = endpoint(300, Duration::from_millis(50)).await;
    let d = Arc::new(delegation(&url, CLIENT_SECRET));
    let ada = SubjectToken::new("ada-token", None);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (d, ada) = (d.clone(), ada.clone());
            tokio::spawn(async move { one(&d, &spec("https://api"), &ada).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "issued:ada-token:https://api:0");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_and_missing_subjects_fail_with_the_reason_remembered_briefly() {
    let (url, count) = endpoint(300, Duration::ZERO).await;
    let d = delegation(&url, CLIENT_SECRET);
    let ada = SubjectToken::new("ada-secret-token", None);
    for _ in 0..2 {
        let e = d
            .tokens(&[&spec("nobody")], Some(&ada))
            .await
            .err()
            .unwrap();
        assert!(e.contains("invalid_target: no audience nobody"), "{e}");
        assert!(
            !e.contains("ada-secret-token"),
            "the subject token is in {e}"
        );
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a refusal was asked again at once"
    );
    tokio::time::sleep(FAILED_KEEP + Duration::from_millis(100)).await;
    assert!(d.tokens(&[&spec("nobody")], Some(&ada)).await.is_err());
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "a refusal was remembered too long"
    );
    // An endpoint that hands the caller's own token back: it never goes upstream.
    let e = d.tokens(&[&spec("echo")], Some(&ada)).await.err().unwrap();
    assert!(e.contains("the caller's own token"), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let e = d.tokens(&[&spec("https://api")], None).await.err().unwrap();
    assert!(e.contains("no OAuth access token"), "{e}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "exchanged without a subject"
    );
    // Wrong client credentials: the endpoint's refusal, named.
    let wrong = delegation(&url, "not-the-client-secret");
    let e = wrong
        .tokens(&[&spec("https://api")], Some(&ada))
        .await
        .err()
        .unwrap();
    assert!(e.contains("invalid_client"), "{e}");
    // An endpoint that is not there.
    let gone = delegation("http://127.0.0.1:9/token", CLIENT_SECRET);
    let e = gone
        .tokens(&[&spec("https://api")], Some(&ada))
        .await
        .err()
        .unwrap();
    assert!(e.contains("could not be reached"), "{e}");
}

#[tokio::test]
async fn a_failing_endpoint_fails_every_waiter_at_once_and_a_slow_one_within_the_deadline() {
    // 16 calls wait on one exchange that is refused after 200 ms: one request, 16 failures,
    // none of them asking again (which would take 16 × 200 ms).
    let (url, count) = endpoint(300, Duration::from_millis(200)).await;
    let d = Arc::new(delegation(&url, CLIENT_SECRET));
    let ada = SubjectToken::new("ada-token", None);
    let started = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (d, ada) = (d.clone(), ada.clone());
            tokio::spawn(async move { d.tokens(&[&spec("nobody")], Some(&ada)).await })
        })
        .collect();
    for call in calls {
        let e = call.await.unwrap().err().unwrap();
        assert!(e.contains("invalid_target"), "{e}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // An endpoint slower than the timeout: the call fails, saying so. Its two grants'
    // exchanges were sent together (one after the other, the first's failure would have ended
    // the call before the second was sent), and the failure is remembered: a call right after
    // sends nothing.
    let (url, _, arrived) = serve(300, Duration::from_secs(30)).await;
    let slow = within(&url, CLIENT_SECRET, Duration::from_millis(300));
    let both = [&spec("https://a"), &spec("https://b")];
    let e = slow.tokens(&both, Some(&ada)).await.err().unwrap();
    assert!(e.contains("did not answer within 300 ms"), "{e}");
    assert_eq!(arrived.load(Ordering::SeqCst), 2, "not sent together");
    let e = slow.tokens(&both, Some(&ada)).await.err().unwrap();
    assert!(e.contains("within 300 ms"), "{e}");
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "a timeout was not remembered"
    );
}

#[tokio::test]
async fn a_token_is_not_kept_past_the_subject_tokens_expiry() {
    let (url, count) = endpoint(3600, Duration::ZERO).await;
    let d = delegation(&url, CLIENT_SECRET);
    let now = crate::time::now_ms() / 1000;
    // The caller's token expires within 2 s: the exchanged one (valid 1 h) is kept no longer.
    let ada = SubjectToken::new("ada-token", Some(now + 2));
    let api = spec("https://api");
    one(&d, &api, &ada).await;
    one(&d, &api, &ada).await;
    assert_eq!(count.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    one(&d, &api, &ada).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "kept past the subject's exp"
    );
    // One already expired: not kept at all.
    let bo = SubjectToken::new("bo-token", Some(now.saturating_sub(5)));
    one(&d, &api, &bo).await;
    one(&d, &api, &bo).await;
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[test]
fn specs_are_checked_and_named() {
    assert!(spec("https://api").check().is_ok());
    let both = ExchangeSpec {
        audience: Some("orders".into()),
        resource: Some("https://orders.internal/".into()),
        scope: Some("orders:read orders:list".into()),
    };
    assert!(both.check().is_ok());
    assert_eq!(
        both.name(),
        "exchanged:aud=orders;resource=https://orders.internal/;scope=orders:read orders:list"
    );
    for (bad, why) in [
        (
            ExchangeSpec::default(),
            "needs an `audience` or a `resource`",
        ),
        (
            ExchangeSpec {
                resource: Some("orders".into()),
                ..ExchangeSpec::default()
            },
            "not an absolute URI",
        ),
        (
            ExchangeSpec {
                scope: Some("a  b".into()),
                ..spec("x")
            },
            "not a space-separated list",
        ),
        (
            ExchangeSpec {
                audience: Some("x\ny".into()),
                ..ExchangeSpec::default()
            },
            "control characters",
        ),
        // `;` would let {aud: "a;resource=https://r"} share a name with {aud: "a", resource: …}.
        (
            ExchangeSpec {
                audience: Some("a;resource=https://r".into()),
                ..ExchangeSpec::default()
            },
            "or `;`",
        ),
    ] {
        let e = bad.check().unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert_eq!(
        format!("{:?}", SubjectToken::new("ada-token", None)),
        "SubjectToken([redacted])"
    );
}
