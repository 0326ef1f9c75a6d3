//! Decisions remembered, where that provably changes nothing.
//!
//! A decision is a function of the bundle and the input. The input's per-request part —
//! `input.context`: time, request id, transport, idempotency key — differs on every call; the
//! rest (principal, tool, arguments by their plan hash, environment, usage) repeats. When every
//! mention of `input` in every module is a path (`input.<field>…`, strings and comments
//! aside) and no path starts at `context`, the policy cannot tell two requests with the same
//! rest apart, and builtins that could (`time.now_ns`, `rand.intn`, …) are refused at load
//! (`builtins.rs`), so the decision for that rest is kept and reused until the bundle is
//! replaced (each bundle has its own memo). Anything that cannot be shown safe — a policy
//! that reads `input.context`, passes `input` whole to a function, indexes it with `[…]`,
//! imports it under another name, or verifies JWTs against the clock — is evaluated every time.
//! (`with input… as …`, as Rego tests use it, replaces the input rather than reading it.)
//! Decisions with approvals, and failures, are never kept.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::builtins::code_only;
use super::types::{
    Action, Decision, PolicyInput, Principal, PromptFacts, ResourceFacts, ToolFacts,
};
use crate::state::Usage;

/// Decisions kept at most per bundle; past it the memo starts over.
const CAPACITY: usize = 4096;

/// Builtins whose result depends on the clock although they are allowed.
const CLOCK_BUILTINS: &[&str] = &["io.jwt.decode_verify"];

/// Why the decisions of `modules` cannot be remembered, or `None` if they can.
pub(super) fn unrepeatable(modules: &[(String, String)]) -> Option<String> {
    for (file, text) in modules {
        let code = code_only(text);
        for builtin in CLOCK_BUILTINS {
            if code.contains(builtin) {
                return Some(format!("{file} calls {builtin}, which reads the clock"));
            }
        }
        let mut from = 0;
        while let Some(found) = code[from..].find("input") {
            let at = from + found;
            from = at + "input".len();
            let word = |c: char| c.is_alphanumeric() || c == '_';
            let before = code[..at].chars().next_back();
            let rest = &code[from..];
            if before.is_some_and(|c| word(c) || c == '.') || rest.starts_with(word) {
                continue; // part of another name (`my_input`, `x.input`, `inputs`)
            }
            let preceding = code[..at].trim_end();
            if preceding.ends_with("with")
                && !preceding[..preceding.len() - 4].ends_with(|c: char| word(c) || c == '.')
            {
                continue; // `with input… as …` replaces the input; it reads nothing
            }
            let line = || code[..at].matches('\n').count() + 1;
            let Some(path) = rest.trim_start().strip_prefix('.') else {
                return Some(format!(
                    "{file}:{}: `input` is used whole, not by a path such as input.args",
                    line()
                ));
            };
            let field: String = path.trim_start().chars().take_while(|&c| word(c)).collect();
            if field.is_empty() || field == "context" {
                return Some(format!(
                    "{file}:{}: the policy reads input.context, which differs on every request",
                    line()
                ));
            }
        }
    }
    None
}

/// What a remembered decision is looked up by: everything in the input but its context.
#[derive(Serialize)]
struct Key<'a> {
    version: u32,
    action: Action,
    principal: &'a Principal,
    tool: Option<&'a ToolFacts>,
    resource: Option<&'a ResourceFacts>,
    prompt: Option<&'a PromptFacts>,
    /// Covers the tool, its component digest, the canonical arguments, the principal's id and
    /// the environment.
    plan_hash: Option<&'a str>,
    environment: &'a str,
    usage: Option<&'a Usage>,
}

fn key(input: &PolicyInput<'_>) -> Option<[u8; 32]> {
    // A call's arguments enter the key through its plan hash; without one (or with
    // approvals, which are decided again on purpose) nothing is kept.
    if input.approvals.is_some() || (input.args.is_some() && input.plan_hash.is_none()) {
        return None;
    }
    let key = Key {
        version: input.version,
        action: input.action,
        principal: input.principal,
        tool: input.tool.as_ref(),
        resource: input.resource.as_ref(),
        prompt: input.prompt.as_ref(),
        plan_hash: input.plan_hash,
        environment: input.environment,
        usage: input.usage,
    };
    let bytes = serde_json::to_vec(&key).ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// The remembered decisions of one bundle.
#[derive(Default)]
pub(super) struct Memo {
    decisions: Mutex<HashMap<[u8; 32], Decision>>,
}

impl Memo {
    /// The decision for `input`: remembered, or made by `decide` (and remembered if it is one).
    pub(super) fn get_or<E>(
        &self,
        input: &PolicyInput<'_>,
        decide: impl FnOnce() -> Result<Decision, E>,
    ) -> Result<Decision, E> {
        let Some(key) = key(input) else {
            return decide();
        };
        let lock = || self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(decision) = lock().get(&key) {
            return Ok(decision.clone());
        }
        let decision = decide()?;
        let mut decisions = lock();
        if decisions.len() >= CAPACITY {
            decisions.clear();
        }
        decisions.insert(key, decision.clone());
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::unrepeatable;

    fn check(text: &str) -> Option<String> {
        unrepeatable(&[("p.rego".into(), text.into())])
    }

    #[test]
    fn only_policies_that_read_input_by_path_and_not_its_context_are_repeatable() {
        for ok in [
            "allow if input.principal.id == \"a\"",
            "x := input . args.path",
            "allow if { my_input[1]; inputs := 2; data.input[0] }",
            "msg := \"input[1] and input.context\" # input.context.time",
            "x := object.get(input.args, \"k\", 1)",
            "test_a if decision.allow with input as {\"context\": {}}",
            "test_b if decision.allow with input.context.time as \"t\"",
        ] {
            assert_eq!(check(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("t := input.context.time", "input.context"),
            ("t := input. context", "input.context"),
            ("x := input", "used whole"),
            ("x := input[\"context\"]", "used whole"),
            ("x := object.get(input, \"context\", {})", "used whole"),
            ("import input as i", "used whole"),
            ("import input.context as c", "input.context"),
            ("x := walk(input)", "used whole"),
            ("x := y.with input", "used whole"),
            ("x := io.jwt.decode_verify(t, c)", "reads the clock"),
        ] {
            let e = check(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
