//! `fetch`: one tool, `http_fetch`, that GETs a URL and returns its body. It reaches only the
//! hosts the operator's policy grants to the call; the gateway refuses everything else and says
//! why, and the tool passes that on.

use portcullis_sdk::http::Request;
use portcullis_sdk::{Annotations, Content, Error, Output, Tool, Value, export_tools, log};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body limit when the caller gives none: 256 KiB.
const DEFAULT_MAX_BYTES: u32 = 256 * 1024;
/// How much of a non-2xx body an error result shows.
const ERROR_BODY_CHARS: usize = 2000;

/// Input of `http_fetch`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchInput {
    /// The URL to GET: `http://` or `https://`, a host (optionally `:port`), then the path and
    /// query, e.g. `https://api.example.com/v1/items?limit=10`. No credentials in the URL.
    #[schemars(
        length(min = 8, max = 8192),
        regex(pattern = r"^[hH][tT][tT][pP][sS]?://")
    )]
    url: String,
    /// The most body bytes to return, 1 to 1048576 (default 262144). A longer body is cut
    /// there, and the result says so.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1048576))]
    max_bytes: Option<u32>,
}

/// Structured output of `http_fetch`.
#[derive(Serialize, JsonSchema)]
struct FetchOutput {
    /// The URL fetched.
    url: String,
    /// The HTTP status code (always 2xx here; other statuses are error results).
    status: u16,
    /// The response's `content-type` header, if it had one.
    content_type: Option<String>,
    /// How many body bytes were read (at most `max_bytes`).
    bytes: u64,
    /// The body was longer than `max_bytes` and has been cut.
    truncated: bool,
    /// The body parsed as JSON, when the content type is JSON and the whole body parses.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<Value>,
}

/// `application/json`, `text/json` and `application/<anything>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// The body as text: valid UTF-8 (a truncated body may end inside a character, which is
/// dropped), or `None` for binary content.
fn body_text(body: &[u8], truncated: bool) -> Option<String> {
    match std::str::from_utf8(body) {
        Ok(text) => Some(text.to_string()),
        // An incomplete character at the very end of a cut body is not binary.
        Err(e) if truncated && e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&body[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

/// At most `limit` characters of `text`, with `…` when cut.
fn prefix(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

struct HttpFetch;

impl Tool for HttpFetch {
    type Input = FetchInput;
    const NAME: &'static str = "http_fetch";
    const TITLE: Option<&'static str> = Some("Fetch a URL");
    const DESCRIPTION: &'static str = "Fetches a URL with an HTTP GET and returns the response \
        body as text (JSON is pretty-printed and also returned as structured output). Only hosts \
        the operator granted to this call can be reached: a refused request fails with the \
        gateway's reason (e.g. which host, port or path is not granted) — don't retry it with \
        variations. Redirects are not followed: a 3xx is reported with its Location, which you \
        may fetch next if it is granted. Non-2xx statuses are errors showing the start of the \
        body. Bodies longer than max_bytes (default 262144) are cut and marked truncated. Never \
        put credentials in the URL; where configured, the gateway adds them itself.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY.open_world();

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(portcullis_sdk::schema_for::<FetchOutput>())
    }

    fn call(input: FetchInput) -> Result<Output, Error> {
        let max_bytes = input.max_bytes.unwrap_or(DEFAULT_MAX_BYTES) as usize;
        let response = Request::get(&input.url)
            .max_response_bytes(max_bytes)
            .truncate(true)
            .send()
            .map_err(|e| {
                log::info(&format!("GET {}: {e}", input.url));
                Error::failed(e)
            })?;
        let status = response.status;
        let bytes = response.body.len();
        log::info(&format!(
            "GET {}: {status}, {bytes} bytes{}",
            input.url,
            if response.truncated {
                " (truncated)"
            } else {
                ""
            }
        ));
        let content_type = response.header("content-type").map(str::to_string);
        let text = body_text(&response.body, response.truncated);

        if !response.is_success() {
            let mut message = format!("HTTP {status} from {}", input.url);
            if response.is_redirect() {
                match response.header("location") {
                    Some(location) => message.push_str(&format!(
                        " — a redirect to {location}, not followed; fetch that URL if it is \
                         what you want"
                    )),
                    None => message.push_str(" — a redirect without a Location header"),
                }
            }
            match &text {
                Some(body) if !body.trim().is_empty() => {
                    message.push_str(&format!(":\n{}", prefix(body.trim(), ERROR_BODY_CHARS)));
                }
                Some(_) => {}
                None => message.push_str(&format!(" ({bytes} bytes of binary body)")),
            }
            return Ok(Output::failure(message));
        }

        let json = match (&content_type, &text) {
            (Some(ct), Some(body)) if is_json(ct) && !response.truncated => serde_json_value(body),
            _ => None,
        };
        let shown = match (&json, &text) {
            (Some(value), _) => {
                portcullis_sdk::serde_json::to_string_pretty(value).map_err(Error::failed)?
            }
            (None, Some(body)) => body.clone(),
            (None, None) => format!(
                "(binary body: {bytes} bytes of {} not shown)",
                content_type.as_deref().unwrap_or("unknown type")
            ),
        };
        let mut output = Output {
            content: vec![Content::Text(shown)],
            structured: Some(
                portcullis_sdk::serde_json::to_value(FetchOutput {
                    url: input.url.clone(),
                    status,
                    content_type,
                    bytes: bytes as u64,
                    truncated: response.truncated,
                    json,
                })
                .map_err(Error::failed)?,
            ),
            is_error: false,
        };
        if response.truncated {
            output = output.with(Content::Text(format!(
                "[truncated: the body is longer than {max_bytes} bytes; only the first \
                 {max_bytes} are shown (max_bytes can be at most 1048576)]"
            )));
        }
        Ok(output)
    }
}

fn serde_json_value(text: &str) -> Option<Value> {
    portcullis_sdk::serde_json::from_str(text).ok()
}

export_tools!(HttpFetch);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/html"));
    }

    #[test]
    fn text_and_binary_bodies() {
        assert_eq!(body_text(b"hi", false).as_deref(), Some("hi"));
        // "é" cut in half at the end of a truncated body.
        assert_eq!(body_text(&[b'a', 0xc3], true).as_deref(), Some("a"));
        assert_eq!(body_text(&[b'a', 0xc3], false), None);
        assert_eq!(body_text(&[0xff, b'a'], true), None);
        assert_eq!(prefix("abcdef", 3), "abc…");
        assert_eq!(prefix("abc", 3), "abc");
    }
}
