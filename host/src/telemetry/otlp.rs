//! The OTLP pipelines: a batch span processor and a periodic metric reader, each exporting
//! over HTTP/protobuf through [`super::client::OtlpClient`].

use anyhow::{Context, Result};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::client::OtlpClient;
use crate::config::TelemetryConfig;

/// What is being exported, and where.
pub(super) struct Export {
    config: TelemetryConfig,
    resource: Resource,
    tracer: Option<(SdkTracerProvider, SdkTracer)>,
    /// Providers with a push reader, flushed at shutdown.
    meters: Vec<SdkMeterProvider>,
}

impl Export {
    /// The pipelines `config` asks for; `None` when it exports nothing.
    pub(super) fn start(config: &TelemetryConfig) -> Result<Option<Self>> {
        if config.traces.is_none() && config.metrics.is_none() {
            return Ok(None);
        }
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let tracer = match &config.traces {
            None => None,
            Some(url) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(OtlpClient::new(url, config.timeout)?)
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_timeout(config.timeout)
                    .build()
                    .context("the OTLP span exporter")?;
                let provider = SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_batch_exporter(exporter)
                    .build();
                let tracer = provider.tracer("portcullis");
                Some((provider, tracer))
            }
        };
        Ok(Some(Self {
            config: config.clone(),
            resource,
            tracer,
            meters: Vec::new(),
        }))
    }

    pub(super) fn tracer(&self) -> Option<SdkTracer> {
        self.tracer.as_ref().map(|(_, tracer)| tracer.clone())
    }

    /// `builder` with the resource and, if metrics are pushed, a periodic OTLP reader.
    pub(super) fn meter_provider(&mut self, builder: MeterProviderBuilder) -> SdkMeterProvider {
        let builder = builder.with_resource(self.resource.clone());
        let Some(url) = &self.config.metrics else {
            return builder.build();
        };
        let exporter = OtlpClient::new(url, self.config.timeout).and_then(|client| {
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(self.config.timeout)
                .build()
                .context("the OTLP metric exporter")
        });
        match exporter {
            Ok(exporter) => {
                let reader = PeriodicReader::builder(exporter)
                    .with_interval(self.config.metrics_interval)
                    .build();
                let provider = builder.with_reader(reader).build();
                self.meters.push(provider.clone());
                provider
            }
            Err(e) => {
                // The endpoint was checked when the configuration was read; this is unexpected.
                tracing::error!("metrics are not pushed over OTLP: {e:#}");
                builder.build()
            }
        }
    }

    pub(super) fn shutdown(self) {
        if let Some((provider, _)) = self.tracer
            && let Err(e) = provider.shutdown_with_timeout(self.config.timeout)
        {
            tracing::warn!("flushing spans at exit: {e}");
        }
        for provider in self.meters {
            if let Err(e) = provider.shutdown_with_timeout(self.config.timeout) {
                tracing::warn!("flushing metrics at exit: {e}");
            }
        }
    }
}
