//! Logs, the W3C trace context of a call, and OpenTelemetry export.
//!
//! Logs go to stderr, always: on the stdio transport, stdout is the protocol. Spans are the
//! pipeline's stages (target [`STAGE`]); they go to OTLP only, never to the log, and cost
//! next to nothing when nothing exports them (their call sites are disabled).

mod client;
mod context;
mod otlp;

use std::sync::Mutex;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetryConfig;

pub use context::TraceContext;

/// The target of every stage span (`tracing::info_span!(target: STAGE, "decide", …)`).
pub const STAGE: &str = "portcullis::stage";

/// Crates that log whole protocol messages (tool arguments and results) below this level; they
/// are capped here whatever `RUST_LOG` says, because arguments never reach the log. rmcp's
/// service logs every JSON-RPC error answer at warn, whose message can quote a policy reason
/// (and so an argument): it gets errors only. Stage spans are for OTLP, not the log.
const CAPPED: &[&str] = &[
    "rmcp=warn",
    "rmcp::service=error",
    "hyper=info",
    "portcullis::stage=off",
];

/// Without `RUST_LOG`: the gateway's own logs, and the OpenTelemetry SDK's warnings (a
/// collector that cannot be reached).
const DEFAULT_FILTER: &str = "portcullis=info,opentelemetry=warn";

/// What exports, for [`shutdown`].
static EXPORT: Mutex<Option<otlp::Export>> = Mutex::new(None);

/// Installs the stderr logger and, with `telemetry` configured to export, the OTLP span and
/// metric pipelines. `RUST_LOG` overrides the default filter, except for the [`CAPPED`]
/// crates. Once per process; later calls only report that it was done.
pub fn init(telemetry: Option<&TelemetryConfig>) -> anyhow::Result<()> {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    for directive in CAPPED {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: files, pipes and log collectors get text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .with_filter(filter);
    let export = telemetry.map(otlp::Export::start).transpose()?.flatten();
    let spans = export
        .as_ref()
        .and_then(otlp::Export::tracer)
        .map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(Targets::new().with_target(STAGE, tracing::Level::INFO))
        });
    let installed = tracing_subscriber::registry()
        .with(log)
        .with(spans)
        .try_init();
    if installed.is_ok() {
        if let Some(telemetry) = telemetry {
            for (what, url) in [
                ("spans", &telemetry.traces),
                ("metrics", &telemetry.metrics),
            ] {
                if let Some(url) = url {
                    tracing::info!(endpoint = %url, "exporting {what} over OTLP");
                }
            }
        }
        *EXPORT.lock().unwrap_or_else(|e| e.into_inner()) = export;
    }
    Ok(())
}

/// Metrics provider for [`crate::metrics::Metrics`]: `builder`, plus the OTLP push reader
/// when metrics are exported. Providers made here are flushed by [`shutdown`].
pub fn meter_provider(
    builder: opentelemetry_sdk::metrics::MeterProviderBuilder,
) -> opentelemetry_sdk::metrics::SdkMeterProvider {
    let mut export = EXPORT.lock().unwrap_or_else(|e| e.into_inner());
    match export.as_mut() {
        Some(export) => export.meter_provider(builder),
        None => builder.build(),
    }
}

/// Flushes and stops the exporters: the spans and metrics still buffered are sent (bounded by
/// the export timeout). Call once, at exit, outside the async runtime.
pub fn shutdown() {
    let export = EXPORT.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(export) = export {
        export.shutdown();
    }
}
