//! The trace-propagation conformance suite against the daemon's OpenTelemetry propagator,
//! with spans recorded by `tracing-opentelemetry` (no exporter).

use cluster_testkit::conformance::trace::{self, TraceFactory};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

struct Otel {
    propagator: OtelPropagator,
    provider: SdkTracerProvider,
}

impl TraceFactory for Otel {
    fn propagator(&self) -> &dyn TracePropagator {
        &self.propagator
    }

    fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(
                tracing_opentelemetry::layer().with_tracer(self.provider.tracer("conformance")),
            ),
        )
    }
}

#[test]
fn trace_suite_otel_propagator() {
    trace::run_all(&Otel {
        propagator: OtelPropagator(TraceContextPropagator::new()),
        provider: SdkTracerProvider::builder().build(),
    });
}
