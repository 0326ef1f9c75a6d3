//! The admin API's routes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::approvals::{VoteError, vote};
use crate::cli::approval_detail;
use crate::policy::Principal;
use crate::state::{ApprovalStatus, now};

use super::{Admin, error, json_response};

type Answer = Response<Full<Bytes>>;

/// The OpenAPI description of this API.
const OPENAPI: &str = include_str!("../../../docs/admin-api.yaml");

pub(super) async fn route(
    admin: &Admin,
    principal: &Principal,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &Bytes,
    origin: String,
) -> Answer {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["", "v1", "openapi.yaml"]) => {
            let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/yaml"),
            );
            response
        }
        (&Method::GET, ["", "v1", "whoami"]) => json_response(
            StatusCode::OK,
            &json!({ "principal": principal.id, "roles": principal.roles }),
        ),
        (&Method::GET, ["", "v1", "approvals"]) => list(admin, query).await,
        (&Method::GET, ["", "v1", "approvals", id]) => {
            match admin.gateway.state.approval(id.to_string()).await {
                Ok(Some(a)) => json_response(StatusCode::OK, &approval_detail(&a)),
                Ok(None) => error(StatusCode::NOT_FOUND, format!("no approval `{id}`")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
            }
        }
        (&Method::POST, ["", "v1", "approvals", id, verdict @ ("approve" | "deny")]) => {
            cast(admin, principal, id, *verdict == "approve", body, origin).await
        }
        (&Method::GET, ["", "v1", "tools"]) => json_response(StatusCode::OK, &components(admin)),
        (&Method::POST, ["", "v1", "tools", "reload"]) => {
            match admin.gateway.reload_catalog().await {
                Ok(reloaded) => {
                    tracing::info!(by = %principal.id, "tools reloaded through the admin API: {reloaded}");
                    json_response(
                        StatusCode::OK,
                        &json!({ "reloaded": reloaded, "components": components(admin)["components"] }),
                    )
                }
                Err(e) => error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{e:#}; the last good catalog stays in force"),
                ),
            }
        }
        (&Method::POST, ["", "v1", "policy", "reload"]) => match admin.gateway.reload_policy() {
            Ok(()) => {
                tracing::info!(by = %principal.id, "policy reloaded through the admin API");
                json_response(
                    StatusCode::OK,
                    &json!({ "reloaded": true, "policy_digest": admin.gateway.policy.digest() }),
                )
            }
            Err(e) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{e:#}; the last good policy stays in force"),
            ),
        },
        (&Method::GET, ["", "metrics"]) => {
            let text = admin.gateway.metrics.prometheus_text();
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (_, ["", "v1", ..]) => error(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path} (see /v1/openapi.yaml)"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "the admin API lives under /v1/ (and metrics at /metrics)",
        ),
    }
}

async fn list(admin: &Admin, query: Option<&str>) -> Answer {
    let wanted = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("status="))
        .unwrap_or("pending");
    let status = match wanted {
        "all" => None,
        other => match ApprovalStatus::parse(other) {
            Some(status) => Some(status),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "status `{other}` is not pending, approved, denied, withdrawn, consumed or all"
                    ),
                );
            }
        },
    };
    match admin.gateway.state.approvals(status, 500).await {
        Ok(mut approvals) => {
            if status == Some(ApprovalStatus::Pending) {
                let at = now();
                approvals.retain(|a| !a.expired(at));
            }
            let list: Vec<Value> = approvals.iter().map(approval_detail).collect();
            json_response(StatusCode::OK, &json!({ "approvals": list }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn cast(
    admin: &Admin,
    principal: &Principal,
    id: &str,
    approve: bool,
    body: &Bytes,
    origin: String,
) -> Answer {
    let reason = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => match map.get("reason") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => return error(StatusCode::BAD_REQUEST, "`reason` must be a string"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON object such as {\"reason\": \"…\"}",
                );
            }
        }
    };
    if !approve && reason.as_deref().is_none_or(str::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "a denial needs a reason: {\"reason\": \"…\"}",
        );
    }
    match vote(
        &admin.gateway.state,
        id,
        principal,
        approve,
        reason,
        origin.clone(),
    )
    .await
    {
        Ok(a) => {
            admin.gateway.approval_decided(&a, &principal.id, &origin);
            json_response(StatusCode::OK, &approval_detail(&a))
        }
        Err(e @ VoteError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ (VoteError::OwnCall(_) | VoteError::MissingRole { .. })) => {
            error(StatusCode::FORBIDDEN, e)
        }
        Err(
            e @ (VoteError::NotPending { .. } | VoteError::Expired(_) | VoteError::AlreadyVoted(_)),
        ) => error(StatusCode::CONFLICT, e),
        Err(VoteError::Store(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// The components in force, with their digests and tools.
fn components(admin: &Admin) -> Value {
    let catalog = admin.gateway.catalog.current();
    let list: Vec<Value> = catalog
        .components()
        .iter()
        .map(|c| {
            let tools: Vec<&str> = catalog
                .tools()
                .filter(|t| Arc::ptr_eq(&t.component, c))
                .map(|t| t.descriptor.name.as_str())
                .collect();
            json!({ "name": c.name, "digest": c.digest, "path": c.path.display().to_string(), "tools": tools })
        })
        .collect();
    json!({ "components": list })
}
