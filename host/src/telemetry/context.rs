//! The W3C trace context a call carries: the agent's (from `_meta.traceparent`), the current
//! span's (when spans are exported), or a new one.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A W3C trace context (`traceparent`, `tracestate`): the agent's trace, which a call
/// continues, or a new one. Its trace id is in the call's audit records and result `_meta`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// The caller's span (16 hex digits), when the trace came from the caller.
    pub parent_id: Option<String>,
    pub sampled: bool,
    pub tracestate: Option<String>,
}

fn hex_field(text: &str, len: usize) -> Option<&str> {
    let ok = text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && text.bytes().any(|b| b != b'0');
    ok.then_some(text)
}

impl TraceContext {
    /// The caller's context, if `traceparent` is valid (W3C Trace Context level 1: a version
    /// this gateway knows the layout of, lowercase hex, ids not all zero); otherwise `None`,
    /// and the call starts a new trace. `tracestate` is kept as given if it is printable and
    /// at most 512 bytes.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let version = traceparent.get(..2)?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if version == "ff" || !version.bytes().all(lower_hex) {
            return None;
        }
        // Version 00 is exactly 55 characters; later versions may append fields after a `-`.
        let fixed = traceparent.get(..55)?;
        if version == "00" && traceparent.len() != 55
            || traceparent.len() > 55 && !traceparent[55..].starts_with('-')
        {
            return None;
        }
        let mut parts = fixed.split('-');
        let (_, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = hex_field(trace_id, 32)?;
        let parent_id = hex_field(parent_id, 16)?;
        let flags = u8::from_str_radix(flags, 16)
            .ok()
            .filter(|_| flags.len() == 2)?;
        let tracestate = tracestate
            .filter(|s| s.len() <= 512 && s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_string);
        Some(Self {
            trace_id: trace_id.to_string(),
            parent_id: Some(parent_id.to_string()),
            sampled: flags & 1 == 1,
            tracestate,
        })
    }

    /// The agent's span as the parent of ours, if the agent sent one.
    pub fn remote_parent(&self) -> Option<opentelemetry::Context> {
        let trace_id = TraceId::from_hex(&self.trace_id).ok()?;
        let span_id = SpanId::from_hex(self.parent_id.as_deref()?).ok()?;
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let parent = SpanContext::new(trace_id, span_id, flags, true, state);
        Some(opentelemetry::Context::new().with_remote_span_context(parent))
    }

    /// The trace of the current span, when spans are exported; otherwise a new trace.
    pub fn current() -> Self {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            let context = span.context();
            let current = context.span().span_context().clone();
            if current.is_valid() {
                return Self {
                    trace_id: current.trace_id().to_string(),
                    parent_id: None,
                    sampled: current.is_sampled(),
                    tracestate: None,
                };
            }
        }
        Self::root()
    }

    /// A new trace, with a random id.
    pub fn root() -> Self {
        use std::hash::BuildHasher;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static KEYS: std::hash::RandomState = std::hash::RandomState::new();
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (high, low) = KEYS.with(|keys| (keys.hash_one((n, 1u8)), keys.hash_one((n, 2u8))));
        Self {
            trace_id: format!("{high:016x}{low:016x}"),
            parent_id: None,
            sampled: true,
            tracestate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::TraceContext;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_is_parsed_strictly() {
        let t = TraceContext::parse(GOOD, Some("vendor=x")).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled);
        assert_eq!(t.tracestate.as_deref(), Some("vendor=x"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
        let parent = t.remote_parent().unwrap();
        let parent = parent.span().span_context().clone();
        assert_eq!(parent.trace_id().to_string(), t.trace_id);
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_remote() && parent.is_sampled());
        // A later version may carry more fields.
        let later = format!("01{}-more", &GOOD[2..]);
        assert!(TraceContext::parse(&later, None).is_some());
        assert_eq!(
            TraceContext::parse(GOOD, Some("bad\u{7f}"))
                .unwrap()
                .tracestate,
            None
        );
    }

    #[test]
    fn new_traces_have_distinct_valid_ids() {
        let (a, b) = (TraceContext::root(), TraceContext::root());
        assert_ne!(a.trace_id, b.trace_id);
        let again = format!("00-{}-00f067aa0ba902b7-01", a.trace_id);
        assert_eq!(
            TraceContext::parse(&again, None).unwrap().trace_id,
            a.trace_id
        );
    }
}
