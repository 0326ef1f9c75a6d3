//! `[telemetry]`: OpenTelemetry export over OTLP/HTTP (protobuf) — spans and metrics — merged
//! with the standard `OTEL_*` environment variables. A setting in `portcullis.toml` wins; what
//! it leaves out comes from the environment. Nothing is exported unless an endpoint is
//! configured (here or in `OTEL_EXPORTER_OTLP_*ENDPOINT`) or an exporter is asked for by name.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;

use crate::grants::parse_duration;

/// The OTLP/HTTP port's conventional base URL, for an exporter asked for without an endpoint.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TelemetryFile {
    otlp_endpoint: Option<String>,
    traces: Option<bool>,
    metrics: Option<bool>,
    service_name: Option<String>,
    metrics_interval: Option<String>,
    timeout: Option<String>,
}

/// Where spans and metrics are pushed, if anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The URL spans are POSTed to (`…/v1/traces`); `None`, spans are not exported.
    pub traces: Option<String>,
    /// The URL metrics are POSTed to (`…/v1/metrics`); `None`, no push (`/metrics` stays).
    pub metrics: Option<String>,
    /// `service.name` of the resource.
    pub service_name: String,
    pub metrics_interval: Duration,
    /// How long one export may take.
    pub timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            traces: None,
            metrics: None,
            service_name: "portcullis".into(),
            metrics_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One signal (traces or metrics): its names in the environment and its path.
struct Signal {
    name: &'static str,
    exporter_var: &'static str,
    endpoint_var: &'static str,
    protocol_var: &'static str,
    path: &'static str,
}

const TRACES: Signal = Signal {
    name: "traces",
    exporter_var: "OTEL_TRACES_EXPORTER",
    endpoint_var: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol_var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    path: "/v1/traces",
};

const METRICS: Signal = Signal {
    name: "metrics",
    exporter_var: "OTEL_METRICS_EXPORTER",
    endpoint_var: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol_var: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    path: "/v1/metrics",
};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_ms(env: Env<'_>, var: &str) -> Result<Option<Duration>> {
    env(var)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| anyhow!("{var} must be a number of milliseconds, not `{v}`"))
        })
        .transpose()
}

/// `telemetry.<setting>` from the file, else the environment's, else `default`.
fn duration(
    file: Option<&String>,
    setting: &str,
    env: Option<Duration>,
    default: Duration,
) -> Result<Duration> {
    let value = match file {
        Some(v) => parse_duration(v).map_err(|e| anyhow!("telemetry.{setting}: {e}"))?,
        None => env.unwrap_or(default),
    };
    if value.is_zero() {
        bail!("telemetry.{setting} must be more than zero");
    }
    Ok(value)
}

/// The endpoint of one signal, or `None` when it is not exported.
fn endpoint(
    signal: &Signal,
    toggle: Option<bool>,
    base: Option<&str>,
    env: Env<'_>,
) -> Result<Option<String>> {
    for var in [signal.protocol_var, "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(protocol) = env(var).filter(|p| p != "http/protobuf") {
            bail!(
                "{var}={protocol} is not supported: portcullis exports OTLP over HTTP with protobuf (`http/protobuf`, usually port 4318)"
            );
        }
    }
    let asked = match env(signal.exporter_var).as_deref().map(str::trim) {
        None | Some("") => None,
        Some("otlp") => Some(true),
        Some("none") => Some(false),
        Some("prometheus") if signal.name == "metrics" => Some(false),
        Some(other) => bail!(
            "{}={other} is not supported: use `otlp` or `none`{}",
            signal.exporter_var,
            if signal.name == "metrics" {
                " (Prometheus reads /metrics on the admin listener)"
            } else {
                ""
            }
        ),
    };
    let configured = match base {
        Some(base) => Some(format!("{}{}", base.trim_end_matches('/'), signal.path)),
        None => env(signal.endpoint_var)
            .filter(|e| !e.is_empty())
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .filter(|e| !e.is_empty())
                    .map(|base| format!("{}{}", base.trim_end_matches('/'), signal.path))
            }),
    };
    let on = toggle.or(asked).unwrap_or(configured.is_some());
    if !on {
        return Ok(None);
    }
    let url = configured.unwrap_or_else(|| format!("{DEFAULT_ENDPOINT}{}", signal.path));
    crate::outbound::Target::parse(&url, &format!("the OTLP {} endpoint", signal.name))?;
    Ok(Some(url))
}

pub(super) fn resolve(file: TelemetryFile, env: Env<'_>) -> Result<TelemetryConfig> {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let base = file.otlp_endpoint.as_deref();
    let (traces, metrics) = if disabled {
        (None, None)
    } else {
        (
            endpoint(&TRACES, file.traces, base, env)?,
            endpoint(&METRICS, file.metrics, base, env)?,
        )
    };
    let service_name = file
        .service_name
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "portcullis".into());
    if service_name.trim().is_empty() {
        bail!("telemetry.service_name must not be empty");
    }
    let defaults = TelemetryConfig::default();
    Ok(TelemetryConfig {
        traces,
        metrics,
        service_name,
        metrics_interval: duration(
            file.metrics_interval.as_ref(),
            "metrics_interval",
            env_ms(env, "OTEL_METRIC_EXPORT_INTERVAL")?,
            defaults.metrics_interval,
        )?,
        timeout: duration(
            file.timeout.as_ref(),
            "timeout",
            env_ms(env, "OTEL_EXPORTER_OTLP_TIMEOUT")?,
            defaults.timeout,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolved(toml: &str, vars: &[(&str, &str)]) -> Result<TelemetryConfig> {
        let file: TelemetryFile = toml::from_str(toml).unwrap();
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(file, &|k| vars.get(k).cloned())
    }

    #[test]
    fn nothing_is_exported_unless_asked() {
        assert_eq!(resolved("", &[]).unwrap(), TelemetryConfig::default());
    }

    #[test]
    fn endpoints_come_from_the_file_then_the_environment() {
        let c = resolved(r#"otlp_endpoint = "http://collector:4318/""#, &[]).unwrap();
        assert_eq!(c.traces.as_deref(), Some("http://collector:4318/v1/traces"));
        assert_eq!(
            c.metrics.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://jaeger:4318/v1/traces",
            ),
            ("OTEL_SERVICE_NAME", "gw-a"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ];
        let c = resolved("", &env).unwrap();
        assert_eq!(c.traces.as_deref(), Some("http://jaeger:4318/v1/traces"));
        assert_eq!(
            c.metrics.as_deref(),
            Some("https://otel.example:4318/v1/metrics")
        );
        assert_eq!(c.service_name, "gw-a");
        assert_eq!(c.metrics_interval, Duration::from_millis(250));
        // The file wins over the environment.
        let c = resolved(
            "otlp_endpoint = \"http://a:1\"\nmetrics = false\nservice_name = \"x\"",
            &env,
        )
        .unwrap();
        assert_eq!(c.traces.as_deref(), Some("http://a:1/v1/traces"));
        assert_eq!((c.metrics, c.service_name.as_str()), (None, "x"));
    }

    #[test]
    fn exporters_by_name_and_the_kill_switch() {
        let c = resolved("", &[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(c.traces.as_deref(), Some("http://localhost:4318/v1/traces"));
        assert_eq!(c.metrics, None);
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
        ];
        let c = resolved("", &env).unwrap();
        assert!(c.traces.is_some() && c.metrics.is_none());
        let off = [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ];
        assert_eq!(
            resolved("otlp_endpoint = \"http://c:4318\"", &off).unwrap(),
            TelemetryConfig::default()
        );
    }

    #[test]
    fn unsupported_settings_are_named() {
        for (toml, env, says) in [
            (
                "",
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported",
            ),
            (
                "",
                ("OTEL_TRACES_EXPORTER", "zipkin"),
                "OTEL_TRACES_EXPORTER=zipkin",
            ),
            ("", ("OTEL_METRIC_EXPORT_INTERVAL", "1s"), "milliseconds"),
            (
                "otlp_endpoint = \"ftp://c\"",
                ("X", ""),
                "http:// or https://",
            ),
            (
                "timeout = \"0s\"",
                ("X", ""),
                "telemetry.timeout must be more than zero",
            ),
        ] {
            let error = format!("{:#}", resolved(toml, &[env]).unwrap_err());
            assert!(error.contains(says), "{error}");
        }
    }
}
