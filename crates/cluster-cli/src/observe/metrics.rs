//! The metrics server: a Prometheus recorder for the `metrics` facade, rendered on
//! `GET /metrics` (text exposition format 0.0.4).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use super::http::{self, Response};
use crate::exit::{CliResult, Code, Failure};

/// Histogram buckets of every `*_seconds` histogram (RPC, election, migration durations).
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Installs the process-wide Prometheus recorder and registers the help texts.
pub(crate) fn install() -> CliResult<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| Failure::new(Code::Error, format!("metrics buckets: {e}")))?
        .install_recorder()
        .map_err(|e| {
            Failure::new(
                Code::Error,
                format!("cannot install the metrics recorder: {e}"),
            )
        })?;
    cluster::runtime::metrics::describe();
    cluster::nats::describe_metrics();
    Ok(handle)
}

/// Serves `/metrics` on `addr`.
pub(crate) async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> CliResult<(SocketAddr, JoinHandle<()>)> {
    http::serve("metrics", addr, move |path| {
        let handle = handle.clone();
        async move {
            match path.as_str() {
                "/metrics" => {
                    handle.run_upkeep();
                    Response {
                        status: 200,
                        content_type: "text/plain; version=0.0.4; charset=utf-8",
                        body: handle.render(),
                    }
                }
                _ => Response::text(404, "see /metrics\n"),
            }
        }
    })
    .await
}
