//! The command line: `serve`, `call`, `tools`, `run`, `policy test|eval`, `approvals`, `token`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use serde_json::json;
use tracing::Instrument;

mod approvals;
mod audit;
mod run;
mod signals;

pub use approvals::{ApprovalsCommand, detail as approval_detail};
pub use run::{RunArgs, parse_grant_dir};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::gate::{GateError, GateSettings, Gateway, RawArgs, Transport};
use crate::mcp;
use crate::policy::{Policy, source_for};
use crate::runner::{EngineSettings, Runner};
use crate::state::sqlite::SqliteStore;

/// portcullis — a governed MCP gateway; every tool call runs in a fresh, capability-scoped
/// WebAssembly instance.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version)]
pub struct Cli {
    /// Configuration file. Default: ./portcullis.toml if it exists, else built-in defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of tool components, overriding the configuration's `tools_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub tools: Option<PathBuf>,
    /// The environment (`dev`, `staging`, `prod`, …), overriding the configuration's.
    #[arg(long, global = true, value_name = "NAME")]
    pub environment: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether this command line is `serve --stdio`.
    pub fn serves_stdio(&self) -> bool {
        matches!(self.command, Command::Serve { stdio: true, .. })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve MCP to agents: over stdio (for clients that start the gateway) or HTTP.
    Serve {
        /// Speak MCP on stdin/stdout.
        #[arg(long, conflicts_with = "http")]
        stdio: bool,
        /// Listen for streamable HTTP at ADDR (default: the configuration's http.listen).
        #[arg(long, value_name = "ADDR")]
        http: Option<Option<String>>,
        /// With --stdio: the principal of the client (default: the configuration's stdio.principal).
        #[arg(long = "as", value_name = "PRINCIPAL", requires = "stdio")]
        principal: Option<String>,
    },
    /// Run one call through the whole pipeline (validate, decide, run) and print the decision
    /// and the result.
    Call {
        /// The tool's name.
        tool: String,
        /// The arguments, as a JSON object (`-` reads them from stdin).
        #[arg(default_value = "{}")]
        args: String,
        /// The principal to call as.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// An idempotency key: a repeat with the same key returns the first outcome.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// List loaded components and their tools, with digests and annotations.
    Tools {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one tool call with exactly the given grants, bypassing policy (for tool authors).
    Run(run::RunArgs),
    /// Work with policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// See, approve and deny calls that wait for approval.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Verify, read and export the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Make a new bearer token and print the configuration line that accepts it.
    Token {
        /// The principal the token is for.
        #[arg(long, default_value = "local")]
        principal: String,
        /// A token for the admin API (`admin_tokens`) instead of MCP (`tokens`).
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run the Rego unit tests (rules named `test_*`).
    Test {
        /// Policy directory (default: the configuration's policy_dir, or the built-in policies).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Evaluate the decision for an input document and print it with its reasons.
    Eval {
        /// The input document (JSON); `-` reads stdin.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Policy directory (default: the configuration's policy_dir, or the built-in policies).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Writes a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub(crate) fn out(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn load_config(cli: &Cli) -> Result<Config> {
    let default = Path::new("portcullis.toml");
    let path = cli
        .config
        .clone()
        .or_else(|| default.exists().then(|| default.to_path_buf()));
    let mut config = Config::load(path.as_deref())?;
    if let Some(tools) = &cli.tools {
        config.tools_dir = std::path::absolute(tools).context("--tools")?;
    }
    if let Some(environment) = &cli.environment {
        if environment.is_empty() {
            anyhow::bail!("--environment must not be empty");
        }
        config.environment.clone_from(environment);
    }
    Ok(config)
}

/// The engine, the capabilities, and every component in the configured tool directory.
pub(crate) async fn load_tools(config: &Config) -> Result<(Runner, Catalog)> {
    std::fs::create_dir_all(&config.workspace)
        .with_context(|| format!("creating the workspace {}", config.workspace.display()))?;
    let (capabilities, warnings) = config.capabilities.open(&config.workspace)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runner = Runner::new(
        EngineSettings {
            admission: config.admission,
            max_memory_bytes: config.ceilings.memory_bytes,
        },
        capabilities,
    )?;
    let catalog = Catalog::load(&runner, &config.tools_dir, Some(&config.cache_dir)).await?;
    Ok((runner, catalog))
}

fn policy_for(config: &Config, dir: Option<&Path>) -> Result<Policy> {
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| config.policy_dir.clone());
    Policy::load(
        source_for(dir.as_deref()),
        json!({
            "workspace": config.workspace.display().to_string(),
            "environment": config.environment,
            "settings": config.settings,
        }),
        config.policy_limits,
    )
}

/// The webhook of `config`, started, with its HMAC key read from its secret.
pub(crate) fn webhook_for(config: &Config) -> Result<Option<crate::webhook::Webhook>> {
    let Some(hook) = &config.webhook else {
        return Ok(None);
    };
    let key = match &hook.secret {
        Some(name) => {
            let spec = config
                .capabilities
                .secrets
                .get(name)
                .with_context(|| format!("webhook.secret: no secret `{name}`"))?;
            let value = spec
                .source()
                .read()
                .map_err(|e| anyhow!("webhook.secret `{name}`: {e}"))?;
            Some(zeroize::Zeroizing::new(value.as_bytes().to_vec()))
        }
        None => None,
    };
    Ok(Some(crate::webhook::Webhook::start(hook, key)?))
}

/// Loads components and policies, opens the state store, and joins them into a gateway.
pub async fn build_gateway(config: &Config) -> Result<Arc<Gateway>> {
    let (runner, catalog) = load_tools(config).await?;
    let policy = policy_for(config, None)?;
    let state: Arc<dyn crate::state::Store> = Arc::new(SqliteStore::open(
        &config.data_dir,
        config.state.durability,
    )?);
    let audit = Arc::new(crate::audit::Audit::open(
        &config.audit,
        &config.data_dir,
        state.clone(),
    )?);
    Ok(Arc::new(
        Gateway::new(
            catalog,
            policy,
            runner,
            GateSettings {
                environment: config.environment.clone(),
                default_limits: config.default_limits,
                ceilings: config.ceilings,
                args: config.args,
                idempotency_retention_s: config.state.idempotency_retention.as_secs(),
                approval_hold: config.state.approval_hold,
            },
            state,
            crate::state::Lease::take(&config.data_dir)?,
        )?
        .reloadable_from(&config.tools_dir, Some(&config.cache_dir))
        .with_webhook(webhook_for(config)?)
        .with_audit(audit)
        .with_principals({
            let config = config.clone();
            Arc::new(move |id: &str, how: &'static str| config.principal(id, how))
        }),
    ))
}

/// 32 random bytes from the OS, hex-encoded.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(format!("pc_{}", hex::encode(bytes)))
}

/// `serve --stdio` speaks MCP on stdin/stdout; otherwise (the default) streamable HTTP.
async fn serve(
    config: &Config,
    stdio: bool,
    http: Option<Option<String>>,
    stdio_principal: Option<&str>,
) -> Result<ExitCode> {
    let gateway = build_gateway(config).await?;
    let tools: Vec<_> = gateway
        .catalog
        .current()
        .tools()
        .map(|t| t.descriptor.name.clone())
        .collect();
    tracing::info!(
        tools = tools.len(),
        policy = %gateway.policy.source(),
        environment = %config.environment,
        "loaded"
    );
    signals::on_sighup(&gateway)?;
    signals::watch(&gateway, config.policy_watch, config.tools_watch);
    signals::seal_on_signal(&gateway, config.http.shutdown_grace)?;
    mcp::tasks::spawn_advancer(gateway.clone());
    gateway
        .audit
        .spawn_sealer(config.audit.checkpoint_every, config.audit.retention);
    if stdio {
        let name = stdio_principal.unwrap_or(&config.stdio_principal);
        let principal = config
            .principal(name, "stdio")
            .with_context(|| format!("no principal `{name}` in the configuration"))?;
        let (state, audit) = (gateway.state.clone(), gateway.audit.clone());
        mcp::stdio::serve(
            gateway,
            principal,
            mcp::precheck::MessageCaps::for_args(config.args),
        )
        .await?;
        // What was queued but not waited for (usage, outcomes) is committed before exit.
        signals::seal_and_flush(&audit, &*state).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = config.clone();
    if let Some(Some(addr)) = http {
        config.http.listen = addr.parse().map_err(|e| anyhow!("--http `{addr}`: {e}"))?;
    }
    // With no configuration file and no tokens, make a one-time token for the local principal
    // so that a first run works without editing anything.
    let mut dev_token = None;
    if config.file.is_none()
        && config
            .principals
            .values()
            .all(|p| p.token_hashes.is_empty())
    {
        let token = random_token()?;
        if let Some(local) = config.principals.get_mut(&config.stdio_principal) {
            local.token_hashes.push(mcp::http::token_hash(&token));
            dev_token = Some(token);
        }
    }
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listening on {}", config.http.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "portcullis: {} tools, policy: {}",
        tools.len(),
        gateway.policy.source()
    );
    // A certificate that cannot be loaded stops the gateway here, before it says it listens.
    let tls = match &config.http.tls {
        Some((cert, key)) => Some(mcp::tls::Tls::new(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("portcullis: MCP over streamable HTTP at {scheme}://{addr}/mcp");
    if let Some(token) = &dev_token {
        eprintln!(
            "portcullis: one-time token for principal `{}` (valid until this process exits):",
            config.stdio_principal
        );
        eprintln!("  Authorization: Bearer {token}");
    }
    eprintln!("portcullis: stdio clients run `portcullis serve --stdio` instead; see the README");
    if crate::admin::wanted(&config) {
        let admin = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("listening for the admin API on {}", config.admin.listen))?;
        eprintln!(
            "portcullis: admin API at http://{}/v1/ (admin tokens only)",
            admin.local_addr()?
        );
        let (gateway, config) = (gateway.clone(), config.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::admin::serve(gateway, &config, admin).await {
                tracing::error!("the admin API stopped: {e:#}");
            }
        });
    }
    let (state, audit) = (gateway.state.clone(), gateway.audit.clone());
    mcp::http::serve(gateway, &config, listener, tls).await?;
    signals::seal_and_flush(&audit, &*state).await?;
    Ok(ExitCode::SUCCESS)
}

async fn call(
    config: &Config,
    tool: &str,
    args: &str,
    principal: Option<&str>,
    key: Option<&str>,
) -> Result<ExitCode> {
    let name = principal.unwrap_or(&config.stdio_principal);
    let principal = config
        .principal(name, "cli")
        .with_context(|| format!("--as `{name}`: no such principal in the configuration"))?;
    let text = if args == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.to_string()
    };
    let gateway = build_gateway(config).await?;
    // The decision printed is the one that runs: plan once, then execute that plan.
    let span = gateway.request_span("tools/call", tool, &principal, Transport::Cli, None);
    let (decision, result) = async {
        let planned = gateway
            .plan(
                &principal,
                tool,
                RawArgs::Text(&text),
                Transport::Cli,
                crate::gate::Asked::key(key.map(str::to_string)),
            )
            .await;
        match planned {
            Ok(plan) => {
                let decision = json!({
                    "allow": plan.decision.allow,
                    "reasons": plan.decision.reasons,
                    "requires_approval": plan.decision.requires_approval,
                    "grants": plan.decision.grants,
                    "limits": plan.decision.limits,
                    "rate": plan.decision.rate,
                    "plan_hash": plan.plan_hash,
                    "policy_digest": plan.policy_digest,
                    "job": plan.context.request_id,
                });
                (decision, gateway.execute(&principal, plan, None).await)
            }
            Err(e) => (json!({ "error": e.to_string() }), Err(e)),
        }
    }
    .instrument(span.clone())
    .await;
    crate::gate::finish_span(&span, &result);
    let ok = matches!(&result, Ok(o) if o.report.outcome.as_ref().is_ok_and(|out| !out.is_error));
    let outcome = match &result {
        Ok(o) => json!({
            "result": o.report.outcome.as_ref().ok(),
            "fuel_used": o.report.fuel_used,
            "elapsed_ms": o.report.elapsed.as_secs_f64() * 1000.0,
            "egress": o.report.egress,
            "idempotency": o.idempotency.as_ref().map(|k| json!({"key": k.key, "replayed": k.replayed})),
        }),
        Err(GateError::PendingApproval(approval)) => json!({
            "error": result.as_ref().err().map(|e| e.to_string()),
            "approval": approval_detail(approval),
        }),
        Err(GateError::Run { report, .. }) => json!({
            "error": result.as_ref().err().map(|e| e.to_string()),
            "fuel_used": report.fuel_used,
            "egress": report.egress,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    out(serde_json::to_string_pretty(
        &json!({ "principal": principal.id, "tool": tool, "decision": decision, "outcome": outcome }),
    )?);
    // The outcome of a keyed call and the run's usage are queued to the store: commit them.
    signals::seal_and_flush(&gateway.audit, &*gateway.state).await?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn policy_command(config: &Config, command: &PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Test { dir } => {
            let policy = policy_for(config, dir.as_deref())?;
            let report = policy.run_tests()?;
            for outcome in &report.outcomes {
                match &outcome.detail {
                    None => out(format!("PASS {}: {}", outcome.file, outcome.name)),
                    Some(detail) => {
                        out(format!("FAIL {}: {}: {detail}", outcome.file, outcome.name))
                    }
                }
            }
            out(format!(
                "{} passed, {} failed",
                report.passed(),
                report.failed()
            ));
            Ok(if report.failed() == 0 && report.passed() > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PolicyCommand::Eval { input, dir } => {
            let policy = policy_for(config, dir.as_deref())?;
            let text = if input.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            } else {
                std::fs::read_to_string(input)
                    .with_context(|| format!("reading {}", input.display()))?
            };
            serde_json::from_str::<serde_json::Value>(&text).context("the input is not JSON")?;
            let started = std::time::Instant::now();
            let result = policy.evaluate_json(&text);
            let evaluation = json!({
                "engine": "interpreter (strict)",
                "elapsed_us": started.elapsed().as_micros() as u64,
                "limits": policy.limits(),
            });
            match result {
                Ok(decision) => {
                    let mut printed = serde_json::to_value(&decision)?;
                    if let Some(object) = printed.as_object_mut() {
                        object.insert("evaluation".into(), evaluation);
                    }
                    out(serde_json::to_string_pretty(&printed)?);
                    Ok(if decision.allow {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                Err(e) => {
                    let failure = json!({"allow": false, "error": format!("{e:#}"), "evaluation": evaluation});
                    out(serde_json::to_string_pretty(&failure)?);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Runs a parsed command line; the exit code says whether the command succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(e) => {
            crate::telemetry::init(None)?;
            return Err(e);
        }
    };
    // Spans and metrics are exported by the commands that run calls.
    let exports = matches!(cli.command, Command::Serve { .. } | Command::Call { .. });
    crate::telemetry::init(exports.then_some(&config.telemetry))?;
    match &cli.command {
        Command::Serve {
            stdio,
            http,
            principal,
        } => serve(&config, *stdio, http.clone(), principal.as_deref()).await,
        Command::Call {
            tool,
            args,
            principal,
            key,
        } => call(&config, tool, args, principal.as_deref(), key.as_deref()).await,
        Command::Tools { json } => {
            let (_runner, catalog) = load_tools(&config).await?;
            if *json {
                let tools: Vec<_> = catalog
                    .tools()
                    .map(|t| json!({ "component": t.component.name, "component_digest": t.component.digest, "descriptor": t.descriptor }))
                    .collect();
                out(serde_json::to_string_pretty(&tools)?);
            } else {
                print!("{}", catalog.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run::run_one(&config, args).await,
        Command::Policy(command) => policy_command(&config, command),
        Command::Approvals(command) => approvals::run(&config, command).await,
        Command::Audit(command) => audit::run(&config, command).await,
        Command::Token { principal, admin } => {
            let token = random_token()?;
            out(format!("token: {token}"));
            out("Add its hash to the configuration; the token itself is not stored:");
            out("");
            out(format!("[principals.{principal}]"));
            let key = if *admin { "admin_tokens" } else { "tokens" };
            out(format!("{key} = [\"{}\"]", mcp::http::token_hash(&token)));
            Ok(ExitCode::SUCCESS)
        }
    }
}
