//! The policy contract, typed: what Rego receives as `input` and what it must return as
//! `data.portcullis.decision`. Documented for operators in `policies/README.md`; change both
//! together.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::ToolAnnotations;
use crate::grants::{Grants, Limits, MIB};

/// Version of the input document; bumped on incompatible changes.
pub const INPUT_VERSION: u32 = 1;

/// What is being decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// May the principal see this tool in `tools/list`?
    List,
    /// May the principal run this call, and with what?
    Call,
    /// May the principal read this resource (`resources/read`), and with what?
    Read,
    /// May the principal get this prompt (`prompts/get`), and with what?
    Get,
    /// May the principal ask this prompt's or template's component for completions?
    Complete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Call => "call",
            Self::Read => "read",
            Self::Get => "get",
            Self::Complete => "complete",
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub id: String,
    pub roles: Vec<String>,
    /// Extra attributes: from configuration, or an OAuth access token's claims.
    pub claims: Map<String, Value>,
    /// `stdio`, `token`, `oauth`, `anonymous` or `cli`.
    pub authenticated_by: &'static str,
}

/// The tool as the gateway knows it (from the component, never from the client).
#[derive(Clone, Debug, Serialize)]
pub struct ToolFacts {
    pub name: String,
    /// The component's name (its file stem).
    pub component: String,
    /// `sha256:` of the component's bytes.
    pub digest: String,
    /// `sha256:` of the pinned descriptor.
    pub descriptor_digest: String,
    pub annotations: ToolAnnotations,
}

/// A resource as the gateway knows it: the URI asked for and what serves it.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceFacts {
    /// The URI read (for `list`, the fixed URI or the template).
    pub uri: String,
    /// The declared name.
    pub name: String,
    /// The URI template it matched, if it is not a fixed resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub component: String,
    pub digest: String,
    pub descriptor_digest: String,
}

/// A prompt as the gateway knows it.
#[derive(Clone, Debug, Serialize)]
pub struct PromptFacts {
    pub name: String,
    pub component: String,
    pub digest: String,
    pub descriptor_digest: String,
}

/// Facts about the request itself.
#[derive(Clone, Debug, Serialize)]
pub struct RequestContext {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    /// `stdio`, `http` or `cli`.
    pub transport: &'static str,
    /// The key the agent sent with the call, if any (`_meta["portcullis/idempotency_key"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The trace the call belongs to (not shown to policy).
    #[serde(skip)]
    pub trace: crate::telemetry::TraceContext,
    /// The caller's OAuth access token, for a token exchange (never shown to policy).
    #[serde(skip)]
    pub subject_token: Option<crate::delegation::SubjectToken>,
}

/// The `input` document.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyInput<'a> {
    pub version: u32,
    pub action: Action,
    pub principal: &'a Principal,
    /// What is decided on: a tool (`list`, `call`), a resource (`list`, `read`, `complete` of
    /// a template) or a prompt (`list`, `get`, `complete`); exactly one is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptFacts>,
    /// The canonical arguments (calls); a template's variables (reads); a prompt's arguments
    /// (gets); `{argument: {name, value}, context}` (completions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<&'a Value>,
    /// `sha256:` over tool, component digest, canonical args, principal, environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<&'a str>,
    pub environment: &'a str,
    pub context: &'a RequestContext,
    /// Calls and fuel of the principal over recent windows (calls, when the policy reads it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<&'a crate::state::Usage>,
    /// Approvals already given for this plan (calls that require approval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<&'a [ApprovalSeen]>,
}

/// A call that needs human approval first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequirement {
    #[serde(default = "one")]
    pub approvers: u32,
    #[serde(default)]
    pub reason: String,
    /// Roles an approver must hold (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// How long the approval may take, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Whether the requester may count as one of the approvers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_self: bool,
}

fn one() -> u32 {
    1
}

/// Limits as policy writes them. Missing fields take the gateway's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub fuel: Option<u64>,
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub output_kb: Option<u64>,
}

impl LimitsSpec {
    /// The effective limits: policy values over `defaults`, refused above `ceiling`.
    pub fn resolve(&self, defaults: &Limits, ceiling: &Limits) -> Result<Limits, String> {
        let limits = Limits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            memory_bytes: self
                .memory_mb
                .map_or(defaults.memory_bytes, |mb| mb.saturating_mul(MIB)),
            timeout: self
                .timeout_ms
                .map_or(defaults.timeout, std::time::Duration::from_millis),
            output_bytes: self
                .output_kb
                .map_or(defaults.output_bytes, |kb| kb.saturating_mul(1024)),
        };
        let over = [
            (limits.fuel > ceiling.fuel, "fuel"),
            (limits.memory_bytes > ceiling.memory_bytes, "memory_mb"),
            (limits.timeout > ceiling.timeout, "timeout_ms"),
            (limits.output_bytes > ceiling.output_bytes, "output_kb"),
        ];
        let over: Vec<&str> = over.iter().filter(|(o, _)| *o).map(|(_, n)| *n).collect();
        if !over.is_empty() {
            return Err(format!(
                "the policy's limits exceed the gateway's ceilings for: {}",
                over.join(", ")
            ));
        }
        Ok(limits)
    }
}

/// A rate limit or budget policy wants enforced: at most `max` units of `cost` per fixed
/// window of `window_s` seconds, counted under `key` (policy composes it, e.g. from the
/// principal and the tool).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    pub key: String,
    pub max: u64,
    pub window_s: u64,
    #[serde(default)]
    pub cost: RateCost,
}

/// What a rate rule counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateCost {
    /// One per call that runs, charged before it runs.
    #[default]
    Calls,
    /// The fuel a call used, charged after it ran; a call starts only while budget is left.
    Fuel,
}

/// An approval already given for this plan, as policy sees it (`input.approvals`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalSeen {
    pub approver: String,
    pub roles: Vec<String>,
    /// RFC 3339, UTC.
    pub at: String,
}

/// The `data.portcullis.decision` document. Unknown fields are an error (a typo such as
/// `grant` must not silently drop a restriction).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub allow: bool,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub requires_approval: Option<ApprovalRequirement>,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub rate: Vec<RateRule>,
    #[serde(default)]
    pub redact: Vec<String>,
}

impl Decision {
    /// A denial with one reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allow: false,
            reasons: vec![reason.into()],
            requires_approval: None,
            grants: Grants::default(),
            limits: LimitsSpec::default(),
            rate: Vec::new(),
            redact: Vec::new(),
        }
    }
}
