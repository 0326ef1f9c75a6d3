//! The command line: `tools`, `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::catalog::Catalog;
use crate::grants::{FsGrant, FsMode, Grants, Limits, parse_bytes, parse_duration};
use crate::runner::{EngineSettings, Runner};

/// portcullis — a governed MCP gateway; every tool call runs in a fresh, capability-scoped
/// WebAssembly instance.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version)]
pub struct Cli {
    #[command(flatten)]
    pub paths: Paths,
    #[command(subcommand)]
    pub command: Command,
}

/// Where components and compiled artifacts live.
#[derive(Args, Debug, Clone)]
pub struct Paths {
    /// Directory of tool components (`*.wasm`).
    #[arg(long, global = true, default_value = ".portcullis/tools")]
    pub tools: PathBuf,
    /// Directory for compiled components (must be writable by the gateway alone).
    #[arg(long, global = true, default_value = ".portcullis/cache")]
    pub cache: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List loaded components and their tools, with digests and annotations.
    Tools {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one tool call in a fresh instance with exactly the given grants (no policy).
    Run(RunArgs),
}

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
        anyhow::bail!("--grant-dir `{spec}`: expected HOST:GUEST:ro or HOST:GUEST:rw");
    };
    let mode = match *mode {
        "ro" => FsMode::Ro,
        "rw" => FsMode::Rw,
        other => anyhow::bail!("--grant-dir `{spec}`: mode must be `ro` or `rw`, not `{other}`"),
    };
    let host = std::fs::canonicalize(host)
        .with_context(|| format!("--grant-dir `{spec}`: host directory `{host}`"))?;
    Ok(FsGrant {
        host,
        guest: guest.to_string(),
        mode,
    })
}

fn limits_from(args: &RunArgs) -> Result<Limits> {
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(m) = &args.memory {
        limits.memory_bytes = parse_bytes(m).map_err(|e| anyhow::anyhow!("--memory {e}"))?;
    }
    if let Some(t) = &args.timeout {
        limits.timeout = parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout {e}"))?;
    }
    if let Some(o) = &args.output {
        limits.output_bytes = parse_bytes(o).map_err(|e| anyhow::anyhow!("--output {e}"))?;
    }
    Ok(limits)
}

async fn load(paths: &Paths) -> Result<(Runner, Catalog)> {
    let runner = Runner::new(EngineSettings::default())?;
    let catalog = Catalog::load(&runner, &paths.tools, Some(&paths.cache)).await?;
    Ok((runner, catalog))
}

/// Runs a parsed command line; the exit code says whether the command succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Tools { json } => {
            let (_runner, catalog) = load(&cli.paths).await?;
            if json {
                let tools: Vec<_> = catalog
                    .tools()
                    .map(|t| {
                        json!({
                            "component": t.component.name,
                            "component_digest": t.component.digest,
                            "descriptor": t.descriptor,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&tools)?);
            } else {
                print!("{}", catalog.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let (runner, catalog) = load(&cli.paths).await?;
            let tool = catalog.get(&args.tool).with_context(|| {
                format!("no tool named `{}` (see `portcullis tools`)", args.tool)
            })?;
            let input: serde_json::Value =
                serde_json::from_str(&args.input).context("the input is not JSON")?;
            let mut grants = Grants::default();
            for spec in &args.grant_dirs {
                grants.fs.push(parse_grant_dir(spec)?);
            }
            for kv in &args.env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env `{kv}`: expected KEY=VALUE"))?;
                grants.env.insert(k.to_string(), v.to_string());
            }
            let limits = limits_from(&args)?;
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
            });
            println!("{}", serde_json::to_string_pretty(&printed)?);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
