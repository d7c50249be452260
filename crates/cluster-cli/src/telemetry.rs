//! OpenTelemetry for the daemon: the `tracing` spans of the runtime (`rpc.client`,
//! `rpc.server`, `kv`, `election.*`) become OpenTelemetry spans, W3C trace context travels in
//! the RPC request headers (`traceparent`, `tracestate`) through the propagation hook of
//! `cluster-core`, and spans are exported over OTLP/HTTP (JSON) when `[telemetry]
//! otlp_endpoint` is configured.
//!
//! The OTLP exporter is a small built-in one (JSON over HTTP/1.1 on plain TCP, `http://` URLs
//! only) so the daemon needs no HTTP client stack; it runs on the batch processor's own thread.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use cluster::core::trace::{TRACEPARENT, TRACESTATE, TracePropagator};
use cluster::core::transport::Headers;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::Registry;

use crate::exit::{CliResult, Code, Failure};

/// The OpenTelemetry layer slot, filled once the configuration is known.
pub(crate) type Slot =
    tracing_subscriber::reload::Handle<Option<Box<dyn Layer<Registry> + Send + Sync>>, Registry>;

static SLOT: OnceLock<Slot> = OnceLock::new();

/// Remembers the reload handle of the layer slot (called by the log setup).
pub(crate) fn set_slot(slot: Slot) {
    let _ = SLOT.set(slot);
}

/// W3C trace context in cluster message headers.
struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|k| self.0.get(k).is_some())
            .collect()
    }
}

/// The OpenTelemetry implementation of the core propagation hook.
pub(crate) struct OtelPropagator(TraceContextPropagator);

impl TracePropagator for OtelPropagator {
    fn inject(&self, span: &tracing::Span, headers: &mut Headers) {
        self.0
            .inject_context(&span.context(), &mut HeaderInjector(headers));
    }

    fn extract(&self, headers: &Headers, span: &tracing::Span) {
        if headers.get(TRACEPARENT).is_none() {
            return;
        }
        let cx = self.0.extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}

/// Installs the W3C propagator in the core hook (once per process).
pub(crate) fn install_propagator() {
    cluster::core::trace::set_propagator(OtelPropagator(TraceContextPropagator::new()));
}

/// A running tracer provider; flushes and shuts down on drop.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Starts exporting spans to `endpoint` (OTLP/HTTP JSON) as service `service` (`cluster`) on
/// node `node`, and turns trace propagation on.
pub(crate) fn start(endpoint: &str, node: &str) -> CliResult<Telemetry> {
    let exporter = OtlpHttpExporter::new(endpoint, node)?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("cluster"));
    let slot = SLOT
        .get()
        .ok_or_else(|| Failure::new(Code::Error, "telemetry: the log setup has no tracing slot"))?;
    slot.reload(Some(layer.boxed()))
        .map_err(|e| Failure::new(Code::Error, format!("telemetry: {e}")))?;
    install_propagator();
    tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
    Ok(Telemetry { provider })
}

/// OTLP/HTTP JSON exporter on plain TCP (`http://host:port[/prefix]`).
#[derive(Debug)]
pub(crate) struct OtlpHttpExporter {
    host_port: String,
    path: String,
    node: String,
}

impl OtlpHttpExporter {
    pub(crate) fn new(endpoint: &str, node: &str) -> CliResult<Self> {
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            Failure::new(
                Code::Invalid,
                format!(
                    "[telemetry] otlp_endpoint {endpoint:?}: only http:// is supported (run a local collector for TLS)"
                ),
            )
        })?;
        let (host_port, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, format!("/{}", p.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:4318")
        };
        Ok(Self {
            host_port,
            path: format!("{prefix}/v1/traces"),
            node: node.to_owned(),
        })
    }

    fn post(&self, body: &[u8]) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(&self.host_port)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host_port,
            body.len()
        )?;
        s.write_all(body)?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        let text = String::from_utf8_lossy(&head[..n]);
        Ok(text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    }
}

fn otlp_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => serde_json::json!({"boolValue": b}),
        Value::I64(i) => serde_json::json!({"intValue": i.to_string()}),
        Value::F64(f) => serde_json::json!({"doubleValue": f}),
        other => serde_json::json!({"stringValue": other.to_string()}),
    }
}

fn otlp_attrs(attrs: &[KeyValue]) -> Vec<serde_json::Value> {
    attrs
        .iter()
        .map(|kv| serde_json::json!({"key": kv.key.as_str(), "value": otlp_value(&kv.value)}))
        .collect()
}

fn nanos(t: std::time::SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .to_string()
}

/// The OTLP JSON document of `spans` (ExportTraceServiceRequest).
pub(crate) fn otlp_json(spans: &[SpanData], node: &str) -> serde_json::Value {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let parent = if s.parent_span_id == opentelemetry::trace::SpanId::INVALID {
                String::new()
            } else {
                s.parent_span_id.to_string()
            };
            let (code, message): (u8, Cow<'_, str>) = match &s.status {
                Status::Unset => (0, "".into()),
                Status::Ok => (1, "".into()),
                Status::Error { description } => (2, description.clone()),
            };
            let kind = match s.span_kind {
                opentelemetry::trace::SpanKind::Internal => 1,
                opentelemetry::trace::SpanKind::Server => 2,
                opentelemetry::trace::SpanKind::Client => 3,
                opentelemetry::trace::SpanKind::Producer => 4,
                opentelemetry::trace::SpanKind::Consumer => 5,
            };
            serde_json::json!({
                "traceId": s.span_context.trace_id().to_string(),
                "spanId": s.span_context.span_id().to_string(),
                "parentSpanId": parent,
                "name": s.name,
                "kind": kind,
                "startTimeUnixNano": nanos(s.start_time),
                "endTimeUnixNano": nanos(s.end_time),
                "attributes": otlp_attrs(&s.attributes),
                "status": {"code": code, "message": message},
            })
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": otlp_attrs(&[
                KeyValue::new("service.name", "cluster"),
                KeyValue::new("service.instance.id", node.to_owned()),
            ])},
            "scopeSpans": [{"scope": {"name": "cluster"}, "spans": spans}],
        }]
    })
}

impl SpanExporter for OtlpHttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = otlp_json(&batch, &self.node).to_string();
        match self.post(body.as_bytes()) {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(OTelSdkError::InternalFailure(format!(
                "OTLP endpoint {}{} answered {status}",
                self.host_port, self.path
            ))),
            Err(e) => Err(OTelSdkError::InternalFailure(format!(
                "OTLP endpoint {}: {e}",
                self.host_port
            ))),
        }
    }
}

#[cfg(test)]
mod conformance_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use cluster::{App, Routing};
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A call from node A to the leader on node B: B's `rpc.server` span is a child of A's
    /// `rpc.client` span (same trace), through the `traceparent` header.
    #[tokio::test(flavor = "current_thread")]
    async fn rpc_server_span_is_a_child_of_the_callers_client_span() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _guard = tracing::subscriber::set_default(subscriber);
        install_propagator();

        let network = cluster::dev::Network::new();
        let mut platforms = Vec::new();
        let mut apps = Vec::new();
        for node in ["a", "b"] {
            let app = App::singleton("db").unwrap();
            app.handle("echo", |r| async move {
                r.app.kv().put("last", r.payload.clone()).await?;
                Ok(r.payload)
            })
            .unwrap();
            let p = cluster::dev::platform(&network, "tr", node)
                .unwrap()
                .options(cluster::PlatformOptions::fast())
                .build()
                .unwrap();
            p.register(&app).unwrap();
            let runner = p.clone();
            tokio::spawn(async move { runner.run().await });
            p.wait_started().await.unwrap();
            platforms.push(p);
            apps.push(app);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let leader = loop {
            if let Some(i) = apps.iter().position(App::is_leader) {
                break i;
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let caller = &apps[1 - leader];
        let reply = caller
            .rpc()
            .call(Routing::ToLeader, "echo", "hello")
            .await
            .unwrap();
        assert_eq!(&reply[..], b"hello");
        for p in &platforms {
            p.shutdown();
        }
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let client = spans
            .iter()
            .find(|s| s.name == "rpc.client")
            .expect("client span");
        let server = spans
            .iter()
            .find(|s| s.name == "rpc.server")
            .expect("server span");
        assert_eq!(
            server.span_context.trace_id(),
            client.span_context.trace_id()
        );
        assert_eq!(server.parent_span_id, client.span_context.span_id());
        assert!(server.parent_span_is_remote);
        // The handler's KV write is inside the server span; elections are traced too.
        let kv = spans.iter().find(|s| s.name == "kv").expect("kv span");
        assert_eq!(kv.span_context.trace_id(), client.span_context.trace_id());
        assert!(spans.iter().any(|s| s.name == "election.promote"));

        // The OTLP JSON of these spans keeps the parent link.
        let doc = otlp_json(&spans, "a");
        let out = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"];
        let server_json = out
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "rpc.server")
            .unwrap();
        assert_eq!(
            server_json["parentSpanId"],
            client.span_context.span_id().to_string()
        );
        assert_eq!(server_json["traceId"].as_str().unwrap().len(), 32);
    }

    /// The exporter posts OTLP JSON to `/v1/traces` of the configured endpoint.
    #[test]
    fn otlp_exporter_posts_json() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        return (head.to_owned(), body.to_owned());
                    }
                }
                if n == 0 {
                    panic!("connection closed early");
                }
            }
        });
        let exporter =
            OtlpHttpExporter::new(&format!("http://127.0.0.1:{port}/otlp"), "n1").unwrap();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc.client", method = "echo");
            span.in_scope(|| {});
        });
        let (head, body) = server.join().unwrap();
        assert!(head.starts_with("POST /otlp/v1/traces HTTP/1.1"), "{head}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let span = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], "rpc.client");
        assert!(
            OtlpHttpExporter::new("https://collector:4318", "n1").is_err(),
            "TLS endpoints are refused with a hint"
        );
        let e = OtlpHttpExporter::new("http://collector", "n1").unwrap();
        assert_eq!(
            (e.host_port.as_str(), e.path.as_str()),
            ("collector:4318", "/v1/traces")
        );
    }
}
