//! Sessions of streamable-HTTP clients before MCP 2026-07-28: an `initialize` opens one, its
//! id works only for the principal that opened it (anyone else gets what an id that never
//! existed gets), `DELETE` closes it, and sessions are bounded per principal (the least
//! recently used one goes) and in all (503). With `sse_poll_after`, a long call's stream is
//! closed early and its answer comes on the resumed stream (SEP-1699).

use crate::gateway::{ALICE, BOB, HttpServer, Options, http_server, post, raw_http, setup};
use crate::support::root;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sessions-test","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// The header lines of a request in session `id`.
fn in_session(id: &str) -> String {
    format!("mcp-session-id: {id}\r\nmcp-protocol-version: 2025-11-25\r\n")
}

/// Sends `initialize` for `token`; the whole response.
async fn initialize(server: &HttpServer, token: &str) -> String {
    raw_http(server, &post(server, token, "", INITIALIZE)).await
}

/// Opens a session for `token` and returns its id.
async fn open(server: &HttpServer, token: &str) -> String {
    let response = initialize(server, token).await;
    assert_eq!(status(&response), 200, "{response}");
    let id = response
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("mcp-session-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no session id in {response}"));
    let done = raw_http(server, &post(server, token, &in_session(&id), INITIALIZED)).await;
    assert_eq!(status(&done), 202, "{done}");
    id
}

/// `tools/list` in session `id` as `token`.
async fn list(server: &HttpServer, token: &str, id: &str) -> String {
    raw_http(server, &post(server, token, &in_session(id), LIST)).await
}

/// A GET (the stream) or DELETE of session `id` as `token`.
async fn session_request(server: &HttpServer, method: &str, token: &str, id: &str) -> String {
    let request = format!(
        "{method} /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         accept: text/event-stream\r\n{}connection: close\r\n\r\n",
        server.addr(),
        in_session(id)
    );
    if method == "GET" {
        // A stream that opened stays open: only its head is needed.
        return head(server, &request).await;
    }
    raw_http(server, &request).await
}

/// The response head of `request` (without waiting for the body to end).
async fn head(server: &HttpServer, request: &str) -> String {
    read_until(server, request, "\r\n\r\n").await
}

/// What arrives for `request` until `marker` has (or the connection closes).
async fn read_until(server: &HttpServer, request: &str, marker: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains(marker) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("{marker:?} did not arrive: {response:?}"))
            .unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_session_is_usable_only_by_the_principal_that_opened_it() {
    let s = setup(Options::default());
    let server = http_server(&s).await;
    let id = open(&server, ALICE).await;
    assert_eq!(id.len(), 36, "a v4 UUID: {id}");

    let mine = list(&server, ALICE, &id).await;
    assert_eq!(status(&mine), 200, "{mine}");
    assert!(mine.contains("text/event-stream"), "{mine}");
    assert!(body(&mine).contains("\"tools\""), "{mine}");

    // Bob holding Alice's id learns nothing: the same answer as for an id nobody opened.
    let stolen = list(&server, BOB, &id).await;
    let made_up = list(&server, BOB, "0b8e3f7c-2d1a-4c5e-9f60-7a1b2c3d4e5f").await;
    assert_eq!(status(&stolen), 404, "{stolen}");
    assert_eq!(status(&made_up), 404, "{made_up}");
    assert_eq!(body(&stolen), body(&made_up));
    assert!(!body(&stolen).contains("\"tools\""));
    for method in ["GET", "DELETE"] {
        let stolen = session_request(&server, method, BOB, &id).await;
        assert_eq!(status(&stolen), 404, "{method}: {stolen}");
    }
    // ... and Bob's attempts did not close it.
    let still = list(&server, ALICE, &id).await;
    assert_eq!(status(&still), 200, "{still}");
    let stream = session_request(&server, "GET", ALICE, &id).await;
    assert_eq!(status(&stream), 200, "{stream}");
    assert!(stream.contains("text/event-stream"), "{stream}");

    // Closed by its owner, it is gone.
    let closed = session_request(&server, "DELETE", ALICE, &id).await;
    assert!(
        (200..300).contains(&status(&closed)),
        "DELETE of an own session: {closed}"
    );
    let gone = list(&server, ALICE, &id).await;
    assert_eq!(status(&gone), 404, "{gone}");

    // A request without a session is still served, statelessly.
    let stateless = raw_http(&server, &post(&server, BOB, "", LIST)).await;
    assert_eq!(status(&stateless), 200, "{stateless}");
    assert!(body(&stateless).contains("\"tools\""), "{stateless}");
}

#[tokio::test]
async fn sessions_are_bounded_per_principal_and_in_all() {
    let s = setup(Options {
        http_extra: "max_sessions = 3\nmax_sessions_per_principal = 2\n",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let first = open(&server, ALICE).await;
    let second = open(&server, ALICE).await;
    let third = open(&server, ALICE).await;
    // Alice's third closed her least recently used one; the others work.
    assert_eq!(status(&list(&server, ALICE, &first).await), 404);
    assert_eq!(status(&list(&server, ALICE, &second).await), 200);
    assert_eq!(status(&list(&server, ALICE, &third).await), 200);

    // Bob's first fills the gateway; his second is refused, and closes none of Alice's.
    let bob = open(&server, BOB).await;
    let refused = initialize(&server, BOB).await;
    assert_eq!(status(&refused), 503, "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after"),
        "{refused}"
    );
    assert!(
        body(&refused).contains("too many open MCP sessions"),
        "{refused}"
    );
    assert_eq!(status(&list(&server, ALICE, &second).await), 200);
    assert_eq!(status(&list(&server, ALICE, &third).await), 200);
    assert_eq!(status(&list(&server, BOB, &bob).await), 200);

    // Once Bob closes his, there is room again.
    let closed = session_request(&server, "DELETE", BOB, &bob).await;
    assert!((200..300).contains(&status(&closed)), "{closed}");
    open(&server, BOB).await;
}

#[tokio::test]
async fn a_long_calls_stream_is_closed_early_and_its_answer_comes_on_resumption() {
    let policy =
        std::fs::read_to_string(root().join("tools/conformance/policy/conformance.rego")).unwrap();
    let s = setup(Options {
        components: &["conformance"],
        policy: Some(&policy),
        http_extra: "sse_poll_after = \"200ms\"\nsse_retry = \"500ms\"\n",
        ..Options::default()
    });
    let server = http_server(&s).await;
    let id = open(&server, ALICE).await;
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_reconnection","arguments":{}}}"#;
    let started = std::time::Instant::now();
    let cut = raw_http(&server, &post(&server, ALICE, &in_session(&id), call)).await;
    assert_eq!(status(&cut), 200, "{cut}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1400),
        "the stream was closed before the call ended"
    );
    assert!(!cut.contains("Reconnection test completed"), "{cut}");
    assert!(
        cut.contains("retry: 500"),
        "the client is told when to come back: {cut}"
    );
    let last = cut
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no event id in {cut}"))
        .trim()
        .to_string();

    // Another principal cannot resume it.
    let resume = |token: &str| {
        format!(
            "GET /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
             accept: text/event-stream\r\n{}last-event-id: {last}\r\nconnection: close\r\n\r\n",
            server.addr(),
            in_session(&id)
        )
    };
    let stolen = head(&server, &resume(BOB)).await;
    assert_eq!(status(&stolen), 404, "{stolen}");
    let resumed = read_until(&server, &resume(ALICE), "Reconnection test completed").await;
    assert_eq!(status(&resumed), 200, "{resumed}");
    assert!(resumed.contains(r#""id":3"#), "{resumed}");
}
