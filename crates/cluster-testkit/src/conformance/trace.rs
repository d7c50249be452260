//! Conformance suite for [`TracePropagator`] (see its contract): `inject` writes a valid W3C
//! `traceparent` and nothing but the W3C headers, `extract` makes a span the child of the
//! context in the headers (same trace, new span id), and disabled spans, missing or malformed
//! headers are ignored without a panic.
//!
//! Spans only carry a context when a subscriber that records them is installed, so the
//! factory gives the subscriber ([`TraceFactory::dispatch`]) the scenarios run under.

use cluster_core::trace::{TRACEPARENT, TRACESTATE, TracePropagator};
use cluster_core::transport::Headers;

use super::announce;

/// Gives the propagator under test and the subscriber its spans need.
pub trait TraceFactory {
    /// The propagator.
    fn propagator(&self) -> &dyn TracePropagator;

    /// A subscriber that records spans for the propagator (e.g. `tracing-opentelemetry`).
    fn dispatch(&self) -> tracing::Dispatch;
}

/// Runs every scenario.
pub fn run_all(factory: &dyn TraceFactory) {
    inject_writes_only_a_valid_w3c_context(factory);
    extract_makes_a_child_of_the_remote_context(factory);
    a_client_and_a_server_span_share_one_trace(factory);
    disabled_spans_and_bad_headers_are_ignored(factory);
}

/// A parsed W3C `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
}

/// Parses `00-<trace id>-<span id>-<flags>` (`None` when it is not a valid version-00 value).
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    let valid = *version == "00"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && span.bytes().any(|b| b != b'0');
    valid.then(|| TraceParent {
        trace_id: (*trace).to_owned(),
        span_id: (*span).to_owned(),
    })
}

fn injected(factory: &dyn TraceFactory, span: &tracing::Span) -> Option<TraceParent> {
    let mut headers = Headers::new();
    factory.propagator().inject(span, &mut headers);
    let value = headers.get(TRACEPARENT)?;
    Some(parse_traceparent(value).unwrap_or_else(|| panic!("invalid traceparent {value:?}")))
}

/// `inject` of a recorded span adds a valid `traceparent` (and at most `tracestate`), and
/// leaves the other headers as they were.
pub fn inject_writes_only_a_valid_w3c_context(factory: &dyn TraceFactory) {
    announce("trace", "inject_writes_only_a_valid_w3c_context");
    tracing::dispatcher::with_default(&factory.dispatch(), || {
        let span = tracing::info_span!("rpc.client");
        let mut headers = Headers::new()
            .with("x-app", "kept")
            .with("Nats-Msg-Id", "m1");
        factory.propagator().inject(&span, &mut headers);
        let value = headers
            .get(TRACEPARENT)
            .unwrap_or_else(|| panic!("no traceparent injected: {headers:?}"));
        assert!(
            parse_traceparent(value).is_some(),
            "invalid traceparent {value:?}"
        );
        assert_eq!(headers.get("x-app"), Some("kept"), "another header changed");
        assert_eq!(
            headers.get("Nats-Msg-Id"),
            Some("m1"),
            "another header changed"
        );
        for (name, _) in headers.iter() {
            assert!(
                [TRACEPARENT, TRACESTATE, "x-app", "Nats-Msg-Id"].contains(&name),
                "inject wrote the non-W3C header {name:?}"
            );
        }
    });
}

/// `extract` of a valid `traceparent` makes the span its child: the span's own context has
/// the same trace id and a different span id.
pub fn extract_makes_a_child_of_the_remote_context(factory: &dyn TraceFactory) {
    announce("trace", "extract_makes_a_child_of_the_remote_context");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    tracing::dispatcher::with_default(&factory.dispatch(), || {
        let headers = Headers::new().with(TRACEPARENT, format!("00-{trace_id}-{parent_id}-01"));
        let span = tracing::info_span!("rpc.server");
        factory.propagator().extract(&headers, &span);
        let own = injected(factory, &span).expect("the child span injects a context");
        assert_eq!(own.trace_id, trace_id, "the child is in the caller's trace");
        assert_ne!(own.span_id, parent_id, "the child has its own span id");
    });
}

/// A client span's context carried in headers to a server span: both in one trace, two
/// different spans; two unrelated client spans are in different traces.
pub fn a_client_and_a_server_span_share_one_trace(factory: &dyn TraceFactory) {
    announce("trace", "a_client_and_a_server_span_share_one_trace");
    tracing::dispatcher::with_default(&factory.dispatch(), || {
        let client = tracing::info_span!("rpc.client");
        let mut headers = Headers::new();
        factory.propagator().inject(&client, &mut headers);
        let sent = injected(factory, &client).expect("the client span has a context");
        let server = tracing::info_span!("rpc.server");
        factory.propagator().extract(&headers, &server);
        let received = injected(factory, &server).expect("the server span has a context");
        assert_eq!(
            received.trace_id, sent.trace_id,
            "one trace across the call"
        );
        assert_ne!(received.span_id, sent.span_id, "two spans");
        let other = tracing::info_span!("rpc.client");
        let unrelated = injected(factory, &other).expect("another root span has a context");
        assert_ne!(
            unrelated.trace_id, sent.trace_id,
            "unrelated root spans share a trace"
        );
    });
}

/// A disabled span injects nothing but W3C headers and never panics; headers without a
/// context or with a malformed `traceparent` leave the span a root of its own trace.
pub fn disabled_spans_and_bad_headers_are_ignored(factory: &dyn TraceFactory) {
    announce("trace", "disabled_spans_and_bad_headers_are_ignored");
    let mut headers = Headers::new().with("x-app", "kept");
    factory
        .propagator()
        .inject(&tracing::Span::none(), &mut headers);
    for (name, _) in headers.iter() {
        assert!(
            [TRACEPARENT, TRACESTATE, "x-app"].contains(&name),
            "inject of a disabled span wrote {name:?}"
        );
    }
    factory
        .propagator()
        .extract(&Headers::new(), &tracing::Span::none());
    let zero_trace = "00000000000000000000000000000000";
    let bad = [
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "",
    ];
    tracing::dispatcher::with_default(&factory.dispatch(), || {
        let plain = tracing::info_span!("rpc.server");
        factory.propagator().extract(&Headers::new(), &plain);
        let own = injected(factory, &plain).expect("a root span has a context");
        assert_ne!(own.trace_id, zero_trace);
        for value in bad {
            let span = tracing::info_span!("rpc.server");
            let headers = Headers::new().with(TRACEPARENT, value);
            factory.propagator().extract(&headers, &span);
            let own = injected(factory, &span)
                .unwrap_or_else(|| panic!("after a malformed {value:?} the span lost its context"));
            assert_ne!(
                own.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736",
                "the malformed traceparent {value:?} was adopted"
            );
        }
    });
}
