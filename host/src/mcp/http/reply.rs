//! The front door's own answers: plain-text refusals, 503 with `Retry-After`, and JSON-RPC
//! errors for bodies that are not one JSON-RPC message.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

use super::Body;

pub fn busy_response(message: &str) -> Response<Body> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, message);
    retry_later(&mut response);
    response
}

/// Makes `response` a 503 with `Retry-After` (whatever its body).
pub fn retry_later(response: &mut Response<Body>) {
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(crate::mcp::RETRY_AFTER.as_secs()),
    );
}

pub fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))).boxed());
    *response.status_mut() = status;
    response
}

/// 400 with a JSON-RPC error: the body was not one JSON-RPC message.
pub fn bad_message(reply: String) -> Response<Body> {
    let mut response = json_reply(reply);
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

pub fn json_reply(text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
