//! Metrics: one set of OpenTelemetry instruments, which Prometheus reads at `GET /metrics` on
//! the admin listener and, when `[telemetry]` pushes metrics, an OTLP reader on the same
//! provider exports.
//!
//! Labels are the tool's name (only for tools in the catalog: a name a client made up is
//! `(unknown)`, so clients cannot mint series or put text in them), and fixed codes for
//! outcomes and refusals. Never arguments, principals' secrets or results.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// Latency buckets, in seconds: 10 µs to 10 s.
const SECONDS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.5, 1.0, 10.0,
];

/// The gateway's instruments.
pub struct Metrics {
    _provider: SdkMeterProvider,
    registry: prometheus::Registry,
    calls: Counter<u64>,
    refusals: Counter<u64>,
    decision: Histogram<f64>,
    instantiate: Histogram<f64>,
    call: Histogram<f64>,
    fuel: Counter<u64>,
    in_flight: UpDownCounter<i64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Decrements the in-flight gauge when a run ends, however it ends.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.add(-1, &[]);
    }
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .map_err(|e| anyhow::anyhow!("the Prometheus exporter: {e}"))?;
        let provider =
            crate::telemetry::meter_provider(SdkMeterProvider::builder().with_reader(exporter));
        let meter = provider.meter("portcullis");
        let seconds = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(what)
                .with_boundaries(SECONDS.to_vec())
                .build()
        };
        Ok(Self {
            calls: meter
                .u64_counter("portcullis.calls")
                .with_description("Calls that ran, by tool and outcome (ok, tool_error, limit, trap, error)")
                .build(),
            refusals: meter
                .u64_counter("portcullis.refusals")
                .with_description("Calls that did not run, by reason (denied, schema, rate_limited, busy, approval_pending, …)")
                .build(),
            decision: seconds("portcullis.policy.decision.duration", "Policy evaluation time of tools/call decisions"),
            instantiate: seconds("portcullis.instantiate.duration", "A fresh instance made ready for a call (store, grants, instantiation), by tool"),
            call: seconds("portcullis.call.duration", "A tool's call in its instance, by tool"),
            fuel: meter
                .u64_counter("portcullis.fuel")
                .with_description("Wasm fuel used by calls, by tool")
                .build(),
            in_flight: meter
                .i64_up_down_counter("portcullis.instances.in_flight")
                .with_description("Tool instances running now")
                .build(),
            _provider: provider,
            registry,
        })
    }

    pub fn decided(&self, took: Duration) {
        self.decision.record(took.as_secs_f64(), &[]);
    }

    /// A run starts: counted in flight until the guard is dropped.
    pub fn running(&self) -> InFlight<'_> {
        self.in_flight.add(1, &[]);
        InFlight(self)
    }

    /// A run ended: `instantiate` and `call` are its two parts' durations.
    pub fn ran(
        &self,
        tool: &str,
        outcome: &'static str,
        (instantiate, call): (Duration, Duration),
        fuel: u64,
    ) {
        let tool = KeyValue::new("tool", tool.to_string());
        self.calls
            .add(1, &[tool.clone(), KeyValue::new("outcome", outcome)]);
        let label = std::slice::from_ref(&tool);
        self.instantiate.record(instantiate.as_secs_f64(), label);
        self.call.record(call.as_secs_f64(), label);
        self.fuel.add(fuel, &[tool]);
    }

    /// A refusal; `tool` only if the catalog has it.
    pub fn refused(&self, tool: Option<&str>, reason: &'static str) {
        let tool = tool.map_or_else(|| "(unknown)".to_string(), str::to_string);
        self.refusals.add(
            1,
            &[KeyValue::new("tool", tool), KeyValue::new("reason", reason)],
        );
    }

    /// The Prometheus text exposition of every instrument.
    pub fn prometheus_text(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let encoded = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        if let Err(e) = encoded {
            tracing::error!("encoding the metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruments_reach_the_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.decided(Duration::from_micros(40));
        {
            let _running = m.running();
            let parts = (Duration::from_micros(20), Duration::from_micros(10));
            m.ran("hash", "ok", parts, 1234);
        }
        m.refused(None, "unknown_tool");
        m.refused(Some("write_file"), "denied");
        let text = m.prometheus_text();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let value = |name: &str, label: (&str, &str)| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
                .map(|s| format!("{:?}", s.value))
        };
        assert_eq!(
            value("portcullis_calls_total", ("outcome", "ok")).as_deref(),
            Some("Counter(1.0)"),
            "{text}"
        );
        assert_eq!(
            value("portcullis_fuel_total", ("tool", "hash")).as_deref(),
            Some("Counter(1234.0)"),
            "{text}"
        );
        assert!(
            value("portcullis_refusals_total", ("tool", "(unknown)")).is_some(),
            "{text}"
        );
        for histogram in ["policy_decision", "instantiate", "call"] {
            let bucket = format!("portcullis_{histogram}_duration_seconds_bucket");
            assert!(text.contains(&bucket), "{bucket}: {text}");
        }
        assert_eq!(
            value(
                "portcullis_instances_in_flight",
                ("otel_scope_name", "portcullis")
            )
            .as_deref(),
            Some("Gauge(0.0)"),
            "{text}"
        );
    }
}
