//! Which OAuth scopes a request needs: those every request needs, its JSON-RPC method's, and
//! for `tools/call` the tool's. Read off the raw body with a parser that builds nothing but
//! the two names; a body that is not one JSON-RPC object is refused when the answer depends
//! on it (rmcp would refuse it too, but the scope check must not rely on that).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;

use super::Refusal;
use crate::config::OAuthConfig;

pub(super) struct ScopeRules {
    every: Vec<String>,
    methods: BTreeMap<String, Vec<String>>,
    /// Shared with every [`OutOfReach`] made from it.
    tools: Arc<BTreeMap<String, Vec<String>>>,
}

/// Which tools a caller lacks the `tool_scopes` for: a caller does not see them listed, as it
/// could not call them. Made per request at the cost of two reference counts; asked only by
/// `tools/list`.
#[derive(Clone, Debug)]
pub struct OutOfReach {
    granted: Arc<BTreeSet<String>>,
    tools: Arc<BTreeMap<String, Vec<String>>>,
}

impl OutOfReach {
    /// Whether `tool` needs a scope the caller lacks.
    pub fn hides(&self, tool: &str) -> bool {
        self.tools
            .get(tool)
            .is_some_and(|needs| !needs.iter().all(|s| self.granted.contains(s)))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

impl ScopeRules {
    pub(super) fn new(config: &OAuthConfig) -> Self {
        Self {
            every: config.scopes.clone(),
            methods: config.method_scopes.clone(),
            tools: Arc::new(config.tool_scopes.clone()),
        }
    }

    /// Scopes every request needs (advertised in a 401's challenge).
    pub(super) fn every(&self) -> &[String] {
        &self.every
    }

    /// The tools `granted` lacks the scopes for; `None` when no tool has scopes of its own.
    pub(super) fn out_of_reach(&self, granted: &Arc<BTreeSet<String>>) -> Option<OutOfReach> {
        (!self.tools.is_empty()).then(|| OutOfReach {
            granted: granted.clone(),
            tools: self.tools.clone(),
        })
    }

    /// The scopes of `granted` missing for the request `body`; the body is read only if a
    /// method or tool has scopes of its own.
    pub(super) fn check(&self, granted: &BTreeSet<String>, body: &[u8]) -> Result<(), Refusal> {
        let mut needed: Vec<&str> = self.every.iter().map(String::as_str).collect();
        if !self.methods.is_empty() || !self.tools.is_empty() {
            let envelope: Envelope = serde_json::from_slice(body).map_err(|_| {
                Refusal::BadRequest("the body is not one JSON-RPC message (a JSON object)")
            })?;
            if let Some(method) = envelope.method.as_deref() {
                needed.extend(
                    self.methods
                        .get(method)
                        .into_iter()
                        .flatten()
                        .map(String::as_str),
                );
                if method == "tools/call"
                    && let Some(tool) = envelope.params.as_ref().and_then(|p| p.name.as_deref())
                {
                    needed.extend(
                        self.tools
                            .get(tool)
                            .into_iter()
                            .flatten()
                            .map(String::as_str),
                    );
                }
            }
        }
        if needed.iter().all(|s| granted.contains(*s)) {
            return Ok(());
        }
        needed.sort_unstable();
        needed.dedup();
        let missing = needed
            .iter()
            .filter(|s| !granted.contains(**s))
            .map(|s| s.to_string())
            .collect();
        Err(Refusal::InsufficientScope {
            missing,
            needs: needed.into_iter().map(str::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ScopeRules {
        ScopeRules {
            every: vec!["mcp".into()],
            methods: BTreeMap::from([("tools/call".into(), vec!["mcp:call".into()])]),
            tools: Arc::new(BTreeMap::from([(
                "write_file".into(),
                vec!["files:write".into()],
            )])),
        }
    }

    fn granted(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tools_out_of_reach_are_those_whose_scopes_are_missing() {
        let r = rules();
        let without = r.out_of_reach(&Arc::new(granted(&["mcp"]))).unwrap();
        assert!(without.hides("write_file") && !without.hides("hash"));
        let with = r
            .out_of_reach(&Arc::new(granted(&["mcp", "files:write"])))
            .unwrap();
        assert!(!with.hides("write_file") && !with.hides("hash"));
    }

    fn missing(granted_: &[&str], body: &str) -> Vec<String> {
        match rules().check(&granted(granted_), body.as_bytes()) {
            Ok(()) => Vec::new(),
            Err(Refusal::InsufficientScope { missing, .. }) => missing,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn method_and_tool_scopes_add_up() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"name":"x"}}}"#;
        assert_eq!(missing(&[], call), ["files:write", "mcp", "mcp:call"]);
        assert_eq!(missing(&["mcp", "mcp:call"], call), ["files:write"]);
        assert!(missing(&["mcp", "mcp:call", "files:write"], call).is_empty());
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(missing(&["mcp"], list).is_empty());
        // The tool name matters only for tools/call.
        let other =
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"write_file"}}"#;
        assert!(missing(&["mcp"], other).is_empty());
    }

    #[test]
    fn bodies_that_hide_the_method_are_refused() {
        for body in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file"}}]"#,
            r#"{"method":"tools/list","method":"tools/call","params":{"name":"write_file"}}"#,
            "not json",
        ] {
            assert!(
                matches!(
                    rules().check(&granted(&["mcp"]), body.as_bytes()),
                    Err(Refusal::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
