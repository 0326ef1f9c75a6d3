//! `portcullis run`: one tool call with exactly the grants on the command line, no policy.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;

use super::{load_tools, out};
use crate::config::Config;
use crate::egress::parse_cli_grant;
use crate::grants::{FsGrant, FsMode, Grants, Limits, parse_bytes, parse_duration};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The tool's name.
    pub tool: String,
    /// The arguments, as a JSON object.
    #[arg(default_value = "{}")]
    pub input: String,
    /// Grant a directory: `HOST:GUEST:ro` or `HOST:GUEST:rw`. Repeatable.
    #[arg(long = "grant-dir", value_name = "HOST:GUEST:MODE")]
    pub grant_dirs: Vec<String>,
    /// Hide a path (relative, e.g. `.git`) in every granted directory. Repeatable.
    #[arg(long = "hide", value_name = "PATH")]
    pub hide: Vec<String>,
    /// Grant outbound HTTP: `[SCHEME://]HOST[:PORT][/PATH-PREFIX][,METHOD...]` (e.g.
    /// `http://127.0.0.1:8091/v1/,GET,POST`), or one grant as JSON, the policy grammar (with
    /// `allow_private`, `inject`). Repeatable.
    #[arg(long = "grant-http", value_name = "SPEC")]
    pub grant_http: Vec<String>,
    /// Grant a configured secret to `secret(name)`. Repeatable.
    #[arg(long = "grant-secret", value_name = "NAME")]
    pub grant_secrets: Vec<String>,
    /// Grant an environment variable: `KEY=VALUE`. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Fuel budget.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Linear memory limit, e.g. `64MiB`.
    #[arg(long)]
    pub memory: Option<String>,
    /// Wall-clock limit, e.g. `2s` or `500ms`.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Result size limit, e.g. `1MiB`.
    #[arg(long)]
    pub output: Option<String>,
}

/// Parses `HOST:GUEST:MODE`.
pub fn parse_grant_dir(spec: &str) -> Result<FsGrant> {
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let [mode, guest, host] = parts.as_slice() else {
        bail!("--grant-dir `{spec}`: expected HOST:GUEST:ro or HOST:GUEST:rw");
    };
    let mode = match *mode {
        "ro" => FsMode::Ro,
        "rw" => FsMode::Rw,
        other => bail!("--grant-dir `{spec}`: mode must be `ro` or `rw`, not `{other}`"),
    };
    let host = std::fs::canonicalize(host)
        .with_context(|| format!("--grant-dir `{spec}`: host directory `{host}`"))?;
    Ok(FsGrant {
        host,
        guest: guest.to_string(),
        mode,
        hide: Vec::new(),
    })
}

fn limits_from(args: &RunArgs) -> Result<Limits> {
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(m) = &args.memory {
        limits.memory_bytes = parse_bytes(m).map_err(|e| anyhow!("--memory {e}"))?;
    }
    if let Some(t) = &args.timeout {
        limits.timeout = parse_duration(t).map_err(|e| anyhow!("--timeout {e}"))?;
    }
    if let Some(o) = &args.output {
        limits.output_bytes = parse_bytes(o).map_err(|e| anyhow!("--output {e}"))?;
    }
    Ok(limits)
}

pub(super) async fn run_one(config: &Config, args: &RunArgs) -> Result<ExitCode> {
    let (runner, catalog) = load_tools(config).await?;
    let tool = catalog
        .get(&args.tool)
        .with_context(|| format!("no tool named `{}` (see `portcullis tools`)", args.tool))?;
    let input: serde_json::Value =
        serde_json::from_str(&args.input).context("the input is not JSON")?;
    // No policy here, but the schema holds: the tool gets what it would get from the gateway.
    let problems = crate::gate::schema_problems(tool, &input);
    if !problems.is_empty() {
        bail!(
            "the input does not match the tool's input schema: {}",
            problems.join("; ")
        );
    }
    let mut grants = Grants::default();
    for spec in &args.grant_dirs {
        let mut grant = parse_grant_dir(spec)?;
        grant.hide.clone_from(&args.hide);
        grants.fs.push(grant);
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env `{kv}`: expected KEY=VALUE"))?;
        grants.env.insert(k.to_string(), v.to_string());
    }
    for spec in &args.grant_http {
        grants
            .http
            .push(parse_cli_grant(spec).map_err(|e| anyhow!(e))?);
    }
    grants.secrets.clone_from(&args.grant_secrets);
    let limits = limits_from(args)?;
    let report = runner
        .call(
            &tool.component.prepared,
            &tool.descriptor.name,
            &input.to_string(),
            &grants,
            &limits,
        )
        .await;
    let ok = matches!(&report.outcome, Ok(out) if !out.is_error);
    let outcome = match &report.outcome {
        Ok(out) => json!({ "result": out }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let printed = json!({
        "tool": tool.descriptor.name,
        "component": tool.component.name,
        "component_digest": tool.component.digest,
        "outcome": outcome,
        "fuel_used": report.fuel_used,
        "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
        "stdout": String::from_utf8_lossy(&report.stdout),
        "stderr": String::from_utf8_lossy(&report.stderr),
        "logs": report.logs,
        "egress": report.egress,
    });
    out(serde_json::to_string_pretty(&printed)?);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
