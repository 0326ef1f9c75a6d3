//! OpenTelemetry over OTLP, end to end: a receiver started here decodes what the gateway
//! exports (`opentelemetry-proto`), and one call's stages arrive as spans under the agent's
//! trace, with their attributes; metrics arrive too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use serde_json::json;

use crate::gateway::{Options, plan_hash, setup, stdio_client, traced};

/// One received span, with its ids in hex and its attributes as text.
#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: String,
    pub attributes: HashMap<String, String>,
    pub service: String,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What the receiver got: decoded spans, metric names, and every raw body (for grepping).
#[derive(Default)]
pub struct Received {
    pub spans: Vec<Span>,
    pub metrics: Vec<String>,
    pub bodies: Vec<Vec<u8>>,
}

/// An OTLP/HTTP receiver on loopback: `/v1/traces` and `/v1/metrics`, protobuf.
pub struct Receiver {
    pub endpoint: String,
    pub got: Arc<Mutex<Received>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn record(got: &Mutex<Received>, path: &str, body: &Bytes) -> Vec<u8> {
    let mut got = got.lock().unwrap();
    got.bodies.push(body.to_vec());
    match path {
        "/v1/traces" => {
            let request = ExportTraceServiceRequest::decode(body.clone()).unwrap();
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(kv.value.as_ref()))
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    got.spans.push(Span {
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_id: hex::encode(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        service: service.clone(),
                    });
                }
            }
            ExportTraceServiceResponse::default().encode_to_vec()
        }
        "/v1/metrics" => {
            let request = ExportMetricsServiceRequest::decode(body.clone()).unwrap();
            for resource in request.resource_metrics {
                for scope in resource.scope_metrics {
                    got.metrics
                        .extend(scope.metrics.into_iter().map(|m| m.name));
                }
            }
            ExportMetricsServiceResponse::default().encode_to_vec()
        }
        other => panic!("an OTLP export to an unexpected path: {other}"),
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Received::default()));
        let sink = got.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let sink = sink.clone();
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let sink = sink.clone();
                        async move {
                            assert_eq!(request.method(), http::Method::POST);
                            let content_type = request.headers().get("content-type").cloned();
                            assert_eq!(
                                content_type.as_ref().and_then(|v| v.to_str().ok()),
                                Some("application/x-protobuf")
                            );
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let answer = record(&sink, &path, &body);
                            let response = http::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        Self { endpoint, got }
    }

    /// The `[telemetry]` section that exports to this receiver.
    pub fn config(&self) -> String {
        format!(
            "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"gw-test\"\nmetrics_interval = \"200ms\"\n",
            self.endpoint
        )
    }

    /// Waits (up to 15 s) until `ready` holds of what was received.
    pub async fn wait(&self, what: &str, ready: impl Fn(&Received) -> bool) {
        for _ in 0..150 {
            if ready(&self.got.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = self.got.lock().unwrap();
        panic!("never received {what}; spans: {:#?}", got.spans);
    }

    /// Every raw body received, as (lossy) text: for checking that nothing leaked.
    pub fn raw(&self) -> String {
        let got = self.got.lock().unwrap();
        got.bodies
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[tokio::test]
async fn one_calls_stages_arrive_as_spans_under_the_agents_trace() {
    let receiver = Receiver::start().await;
    let s = setup(Options {
        extra: &receiver.config(),
        ..Options::default()
    });
    let client = stdio_client(&s).await;
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let params = traced("hash", json!({"text": "span me"}), &traceparent);
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(false));
    let plan = plan_hash(&result).unwrap();
    let job = crate::audit::job(&result);
    // A call without a trace context starts a trace of its own, the one its result names.
    let untraced = crate::gateway::call(&client, "hash", json!({"text": "x"}))
        .await
        .unwrap();
    let own_trace = untraced.meta.as_ref().unwrap().0["portcullis/trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    client.cancel().await.unwrap(); // the gateway exits, flushing what it buffered

    let stages = [
        "validate",
        "decide",
        "gate",
        "admit",
        "rate",
        "record",
        "instantiate",
        "call",
    ];
    receiver
        .wait("every stage of the call", |got| {
            stages.iter().all(|stage| {
                got.spans
                    .iter()
                    .any(|s| s.name == *stage && s.trace_id == trace_id)
            })
        })
        .await;
    receiver
        .wait("the metrics", |got| {
            got.metrics.iter().any(|m| m == "portcullis.calls")
        })
        .await;
    let got = receiver.got.lock().unwrap();
    let ours: Vec<&Span> = got
        .spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();
    let root = ours
        .iter()
        .find(|s| s.name == "tools/call hash")
        .unwrap_or_else(|| panic!("no request span: {ours:#?}"));
    assert_eq!(root.parent_id, parent, "the agent's span is the parent");
    assert_eq!(root.service, "gw-test");
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "hash"),
        ("enduser.id", "bob"),
        ("portcullis.transport", "stdio"),
        ("portcullis.decision", "allow"),
        ("portcullis.outcome", "ok"),
        ("portcullis.plan_hash", plan.as_str()),
        ("portcullis.job", job.as_str()),
    ] {
        assert_eq!(root.attr(key), Some(value), "{key}: {root:#?}");
    }
    assert!(
        root.attr("portcullis.fuel")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // Every stage hangs off the request span (directly, or through another stage).
    let by_id: HashMap<&str, &Span> = ours.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    for span in &ours {
        let mut at = *span;
        while at.span_id != root.span_id {
            at = by_id
                .get(at.parent_id.as_str())
                .unwrap_or_else(|| panic!("{} is not under the request span", span.name));
        }
    }
    let named = |name: &str| ours.iter().find(|s| s.name == name).unwrap();
    assert_eq!(named("decide").attr("portcullis.decision"), Some("allow"));
    assert_eq!(
        named("decide").attr("portcullis.plan_hash"),
        Some(plan.as_str())
    );
    assert!(named("decide").attr("portcullis.policy.digest").is_some());
    assert_eq!(named("call").attr("portcullis.outcome"), Some("ok"));
    let records: Vec<_> = ours
        .iter()
        .filter(|s| s.name == "record")
        .filter_map(|s| s.attr("portcullis.record"))
        .collect();
    assert_eq!(records, ["intent", "outcome"], "written in this order");
    assert!(
        got.spans
            .iter()
            .any(|s| s.trace_id == own_trace && s.name == "tools/call hash"),
        "the untraced call's spans carry the trace id its result names"
    );
    drop(got);
    let raw = receiver.raw();
    assert!(
        !raw.contains("span me"),
        "an argument reached the exported spans"
    );
}
