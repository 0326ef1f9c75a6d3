//! A request for a method the gateway serves whose params do not fit the method: rmcp hands it
//! on as a custom request, which would be answered "method not found". It gets -32602 (invalid
//! params) instead, saying what is wrong, so a client can tell a typo in its params from a
//! method the server lacks.

use rmcp::model::{
    CallToolRequestParams, CancelTaskParams, ErrorData, GetTaskParams, InitializeRequestParams,
    PaginatedRequestParams, SetLevelRequestParams, SubscriptionsListenRequestParams,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The -32602 answer for `method` with `params`, if the gateway serves `method`.
pub fn invalid(method: &str, params: Option<&Value>) -> Option<ErrorData> {
    let problem = match method {
        "tools/call" => problem::<CallToolRequestParams>(params),
        "tools/list" => problem::<PaginatedRequestParams>(params),
        "tasks/get" => problem::<GetTaskParams>(params),
        "tasks/cancel" => problem::<CancelTaskParams>(params),
        "logging/setLevel" => problem::<SetLevelRequestParams>(params),
        "subscriptions/listen" => problem::<SubscriptionsListenRequestParams>(params),
        "initialize" => problem::<InitializeRequestParams>(params),
        _ => return None,
    };
    Some(ErrorData::invalid_params(
        format!("invalid params for {method}: {problem}"),
        None,
    ))
}

/// Why `params` is not a `T`, in serde's words (which name the field, and may quote a value
/// of the request: it goes back to its sender only).
fn problem<T: DeserializeOwned>(params: Option<&Value>) -> String {
    let Some(params) = params else {
        return "params are required".into();
    };
    match T::deserialize(params) {
        Err(e) => e.to_string(),
        Ok(_) => "the params do not fit the method".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_that_do_not_fit_a_served_method_are_named() {
        let e = invalid("tools/call", Some(&json!({"arguments": {}}))).unwrap();
        assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
        let e = invalid("tools/call", Some(&json!({"name": "t", "arguments": [1]}))).unwrap();
        assert!(
            e.message.contains("invalid params for tools/call"),
            "{}",
            e.message
        );
        let e = invalid("tools/call", None).unwrap();
        assert!(e.message.contains("params are required"), "{}", e.message);
        assert!(invalid("resources/list", Some(&json!({}))).is_none());
    }
}
