//! `ops`: tools for a service control plane's HTTP API — list, inspect, restart, scale and
//! deploy services.
//!
//! The control plane's base URL comes from `CONTROL_PLANE_URL`, which policy grants per call
//! together with an http grant for that host. The credential is never seen here: the gateway
//! injects it (an `Authorization` header) into requests to the control plane, so a 401 means
//! that this call's grant did not carry one.
//!
//! The API, JSON everywhere:
//! - `GET /v1/services` → `{"services": [service, ...]}`
//! - `GET /v1/services/NAME` → the service
//! - `POST /v1/services/NAME/restart` → `{"service": service, "restarted": true}`
//! - `POST /v1/services/NAME/scale` `{"replicas": N}` → the service
//! - `POST /v1/services/NAME/deploy` `{"artifact": "sha256:..."}` → the service
//! - errors: 4xx/5xx with `{"error": "..."}`
//!
//! where a service is `{"name", "replicas", "artifact", "status", "restarts"}`.

use portcullis_sdk::http::{Method, Request, Response};
use portcullis_sdk::{
    Annotations, Content, Error, Output, Tool, Value, export_tools, json, log, progress, schema_for,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The environment variable that names the control plane.
const BASE_VAR: &str = "CONTROL_PLANE_URL";

/// A service as the control plane describes it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Service {
    /// The service's name.
    name: String,
    /// How many replicas it runs.
    replicas: u64,
    /// The artifact it runs: `sha256:` and 64 hex digits.
    artifact: String,
    /// e.g. `running`.
    status: String,
    /// How many times it was restarted.
    restarts: u64,
}

impl Service {
    fn summary(&self) -> String {
        format!(
            "{}: {} replica{}, {}, artifact {}, {} restart{}",
            self.name,
            self.replicas,
            plural(self.replicas),
            self.status,
            self.artifact,
            self.restarts,
            plural(self.restarts)
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

// ------------------------------------------------------------------------------------------
// The API client

/// Why a call did not produce its normal result.
enum Fail {
    /// The call could not be carried out (no control plane, transport failure).
    Error(Error),
    /// The control plane answered with an error the model should read.
    Answer(Output),
}

impl From<Error> for Fail {
    fn from(error: Error) -> Self {
        Fail::Error(error)
    }
}

/// Turns a tool body's outcome into the SDK's.
fn finish(tool: &str, outcome: Result<Output, Fail>) -> Result<Output, Error> {
    match outcome {
        Ok(output) => Ok(output),
        Err(Fail::Answer(output)) => Ok(output),
        Err(Fail::Error(error)) => {
            let (Error::Failed(message) | Error::InvalidInput(message)) = &error;
            log::warn(&format!("{tool}: {message}"));
            Err(error)
        }
    }
}

/// The control plane's base URL, without a trailing `/`.
fn base_url() -> Result<String, Error> {
    match std::env::var(BASE_VAR) {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().trim_end_matches('/').to_string()),
        _ => Err(Error::failed(format!(
            "no control plane is granted to this call ({BASE_VAR} is not set)"
        ))),
    }
}

/// The `error` text of an error answer, else the start of its body.
fn error_text(response: &Response) -> String {
    if let Ok(Value::Object(map)) = response.json::<Value>()
        && let Some(Value::String(message)) = map.get("error")
    {
        return message.clone();
    }
    let body = response.text_lossy();
    let body = body.trim();
    if body.is_empty() {
        "no details".to_string()
    } else {
        body.chars().take(500).collect()
    }
}

/// Sends one request to the control plane and decodes a 2xx answer as `T`.
fn api<T: DeserializeOwned>(method: Method, path: &str, body: Option<Value>) -> Result<T, Fail> {
    let url = format!("{}{path}", base_url()?);
    let mut request = Request::new(method.clone(), &url).header("accept", "application/json");
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().map_err(|e| {
        Error::failed(format!(
            "the control plane request {method} {path} failed: {e}"
        ))
    })?;
    log::debug(&format!("{method} {path}: {}", response.status));
    if response.status == 401 {
        return Err(Fail::Answer(Output::failure(format!(
            "the control plane refused {method} {path} with 401 ({}): the gateway did not \
             inject a credential for this call — the operator's http grant for the control \
             plane must inject its token",
            error_text(&response)
        ))));
    }
    if !response.is_success() {
        return Err(Fail::Answer(Output::failure(format!(
            "the control plane answered {method} {path} with {}: {}",
            response.status,
            error_text(&response)
        ))));
    }
    response.json::<T>().map_err(|e| {
        Fail::Error(Error::failed(format!(
            "unexpected answer from the control plane to {method} {path}: {e}"
        )))
    })
}

/// A result with a short text summary first and `value` as structured output.
fn result<T: Serialize>(summary: String, value: &T) -> Result<Output, Fail> {
    let structured = Output::structured(value)?;
    Ok(Output {
        content: std::iter::once(Content::Text(summary))
            .chain(structured.content)
            .collect(),
        ..structured
    })
}

// ------------------------------------------------------------------------------------------
// Inputs and outputs

/// Input of a tool that names one service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NameInput {
    /// The service's name: lower-case letters, digits and `-`, starting with a letter.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,62}$"))]
    name: String,
}

/// No input.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoInput {}

/// Input of `scale_service`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScaleInput {
    /// The service's name: lower-case letters, digits and `-`, starting with a letter.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,62}$"))]
    name: String,
    /// The number of replicas to run, 0 to 100 (0 stops the service).
    #[schemars(range(min = 0, max = 100))]
    replicas: u32,
}

/// Input of `deploy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeployInput {
    /// The service to deploy to: lower-case letters, digits and `-`, starting with a letter.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,62}$"))]
    service: String,
    /// The artifact to run, by digest: `sha256:` followed by 64 lower-case hex digits. Tags
    /// such as `latest` are not accepted.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    artifact: String,
}

/// Output of `list_services`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct ServiceList {
    /// Every service, as the control plane lists them.
    services: Vec<Service>,
}

/// Output of `get_service` and `scale_service`.
#[derive(Serialize, JsonSchema)]
struct OneService {
    /// The service (after the change, for a change).
    service: Service,
}

/// Output of `restart_service`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Restarted {
    /// The service after the restart.
    service: Service,
    /// The control plane restarted it.
    restarted: bool,
}

/// Output of `deploy`.
#[derive(Serialize, JsonSchema)]
struct Deployed {
    /// The service after the deploy, as the control plane reports it.
    service: Service,
    /// The artifact that was asked for.
    requested: String,
    /// The service reports that it runs the requested artifact.
    running: bool,
}

// ------------------------------------------------------------------------------------------
// Tools

struct ListServices;

impl Tool for ListServices {
    type Input = NoInput;
    const NAME: &'static str = "list_services";
    const TITLE: Option<&'static str> = Some("List services");
    const DESCRIPTION: &'static str = "Lists every service of the control plane with its \
        replica count, status, running artifact (sha256 digest) and restart count. Read-only.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<ServiceList>())
    }

    fn call(_: NoInput) -> Result<Output, Error> {
        finish(Self::NAME, list_services())
    }
}

fn list_services() -> Result<Output, Fail> {
    let list: ServiceList = api(Method::Get, "/v1/services", None)?;
    log::info(&format!("list_services: {} services", list.services.len()));
    let count = list.services.len() as u64;
    let mut summary = format!("{count} service{}:", plural(count));
    for service in &list.services {
        summary.push_str(&format!("\n- {}", service.summary()));
    }
    result(summary, &list)
}

struct GetService;

impl Tool for GetService {
    type Input = NameInput;
    const NAME: &'static str = "get_service";
    const TITLE: Option<&'static str> = Some("Show a service");
    const DESCRIPTION: &'static str = "Shows one service of the control plane: replicas, \
        status, running artifact and restart count. Read-only; an unknown name is an error.";
    const ANNOTATIONS: Annotations = Annotations::READ_ONLY;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<OneService>())
    }

    fn call(input: NameInput) -> Result<Output, Error> {
        finish(Self::NAME, get_service(&input.name))
    }
}

fn get_service(name: &str) -> Result<Output, Fail> {
    let service: Service = api(Method::Get, &format!("/v1/services/{name}"), None)?;
    log::info(&format!("get_service {name}: {}", service.status));
    result(service.summary(), &OneService { service })
}

struct RestartService;

impl Tool for RestartService {
    type Input = NameInput;
    const NAME: &'static str = "restart_service";
    const TITLE: Option<&'static str> = Some("Restart a service");
    const DESCRIPTION: &'static str = "Restarts every replica of one service (a rolling \
        restart by the control plane). Keeps its artifact and replica count; each call restarts \
        it again.";
    const ANNOTATIONS: Annotations = Annotations::NONE;

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<Restarted>())
    }

    fn call(input: NameInput) -> Result<Output, Error> {
        finish(Self::NAME, restart_service(&input.name))
    }
}

fn restart_service(name: &str) -> Result<Output, Fail> {
    let path = format!("/v1/services/{name}/restart");
    let answer: Restarted = api(Method::Post, &path, Some(json!({})))?;
    log::info(&format!(
        "restart_service {name}: restarted={}",
        answer.restarted
    ));
    let service = &answer.service;
    let summary = if answer.restarted {
        format!(
            "restarted {} (restart #{}); now {}",
            service.name, service.restarts, service.status
        )
    } else {
        format!(
            "the control plane did not restart {}; it is {}",
            service.name, service.status
        )
    };
    result(summary, &answer)
}

struct ScaleService;

impl Tool for ScaleService {
    type Input = ScaleInput;
    const NAME: &'static str = "scale_service";
    const TITLE: Option<&'static str> = Some("Scale a service");
    const DESCRIPTION: &'static str = "Sets the number of replicas of one service (0 to 100; \
        0 stops it). Scaling down removes running replicas. Setting the same count again \
        changes nothing.";
    const ANNOTATIONS: Annotations = Annotations::DESTRUCTIVE.idempotent();

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<OneService>())
    }

    fn call(input: ScaleInput) -> Result<Output, Error> {
        finish(Self::NAME, scale_service(&input.name, input.replicas))
    }
}

fn scale_service(name: &str, replicas: u32) -> Result<Output, Fail> {
    let path = format!("/v1/services/{name}/scale");
    let service: Service = api(Method::Post, &path, Some(json!({ "replicas": replicas })))?;
    log::info(&format!(
        "scale_service {name}: {} replicas",
        service.replicas
    ));
    let summary = format!(
        "scaled {} to {} replica{} ({})",
        service.name,
        service.replicas,
        plural(service.replicas),
        service.status
    );
    result(summary, &OneService { service })
}

struct Deploy;

impl Tool for Deploy {
    type Input = DeployInput;
    const NAME: &'static str = "deploy";
    const TITLE: Option<&'static str> = Some("Deploy an artifact");
    const DESCRIPTION: &'static str = "Deploys an artifact, named by its sha256 digest \
        (`sha256:` and 64 lower-case hex digits; tags are not accepted), to one service: its \
        replicas are replaced by ones running that artifact. Deploying the artifact a service \
        already runs changes nothing. Reports progress while it runs.";
    const ANNOTATIONS: Annotations = Annotations::DESTRUCTIVE.idempotent();

    fn output_schema() -> Option<portcullis_sdk::schemars::Schema> {
        Some(schema_for::<Deployed>())
    }

    fn call(input: DeployInput) -> Result<Output, Error> {
        finish(Self::NAME, deploy(&input.service, input.artifact))
    }
}

fn deploy(name: &str, artifact: String) -> Result<Output, Fail> {
    // `sha256:` and the first 12 digits, for progress messages.
    let short = &artifact[..artifact.len().min(19)];
    progress(0, Some(3), Some(&format!("submitting {short}… to {name}")));
    let path = format!("/v1/services/{name}/deploy");
    let service: Service = api(Method::Post, &path, Some(json!({ "artifact": artifact })))?;
    progress(2, Some(3), Some(&format!("{name} accepted the deploy")));
    log::info(&format!("deploy {name}: now runs {}", service.artifact));
    let running = service.artifact == artifact;
    let mut summary = format!("deployed {artifact} to {name}");
    if !running {
        summary.push_str(&format!(
            "; but the control plane reports that it runs {}",
            service.artifact
        ));
    }
    summary.push_str(&format!(
        "; {} replica{}, {}",
        service.replicas,
        plural(service.replicas),
        service.status
    ));
    progress(3, Some(3), Some("done"));
    result(
        summary,
        &Deployed {
            service,
            requested: artifact,
            running,
        },
    )
}

export_tools!(
    ListServices,
    GetService,
    RestartService,
    ScaleService,
    Deploy
);
