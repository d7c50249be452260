//! The new conformance suites catch broken implementations: each test runs one scenario
//! against a deliberately wrong in-test implementation and expects the violation to be
//! reported (a suite that cannot fail proves nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cluster_core::audit::{AuditFilter, AuditPage, AuditRecord, AuditSink};
use cluster_core::backend::{Backend, BackendState, BackendStatus};
use cluster_core::planner::{PlanOutcome, PlanRequest, Planner};
use cluster_core::trace::TracePropagator;
use cluster_core::transport::Headers;
use cluster_core::wire::assignment::AppPlacement;
use cluster_core::{ActiveResource, Clock, Epoch, LoadProbe, NodeLoad, Result};
use cluster_memory::MemoryAuditLog;
use cluster_testkit::conformance::audit::{self, AuditFactory, AuditLogs};
use cluster_testkit::conformance::backend::{self, BackendFactory, BackendUnderTest};
use cluster_testkit::conformance::resource::{self, Observed, ResourceFactory, ResourceUnderTest};
use cluster_testkit::conformance::trace::{self, TraceFactory};
use cluster_testkit::conformance::{clock, load, planner};
use tokio::time::Instant;

/// A clock that jumps back 1 ms on every 7th reading.
#[derive(Debug, Default)]
struct JumpyClock(AtomicU64);

impl Clock for JumpyClock {
    fn now(&self) -> Instant {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now() + Duration::from_millis(10);
        if n % 7 == 6 {
            now - Duration::from_millis(20)
        } else {
            now
        }
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "now went backwards")]
async fn a_clock_going_backwards_is_caught() {
    clock::now_never_goes_backwards(&JumpyClock::default()).await;
}

/// An audit sink that forgets to say a page was cut.
struct NeverTruncated(MemoryAuditLog);

#[async_trait]
impl AuditSink for NeverTruncated {
    async fn append(&self, record: &AuditRecord) -> Result<()> {
        self.0.append(record).await
    }

    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage> {
        let mut page = self.0.query(filter).await?;
        page.truncated = false;
        Ok(page)
    }
}

struct SilentCuts;

#[async_trait]
impl AuditFactory for SilentCuts {
    async fn open(&self, _name: &str) -> AuditLogs {
        let log = Arc::new(NeverTruncated(MemoryAuditLog::new()));
        AuditLogs {
            writer: log.clone(),
            reader: log,
        }
    }
}

#[tokio::test]
#[should_panic(expected = "7 records in pages of 3")]
async fn an_audit_sink_cutting_pages_silently_is_caught() {
    audit::paging_never_cuts_silently(&SilentCuts).await;
}

/// A probe reporting more memory in use than the node has.
struct Overfull;

impl LoadProbe for Overfull {
    fn sample(&self) -> Option<NodeLoad> {
        Some(NodeLoad {
            cpu: 100,
            memory: 1500,
            disk: 0,
        })
    }
}

#[test]
#[should_panic(expected = "more than the whole")]
fn a_load_probe_reporting_more_than_the_whole_is_caught() {
    load::samples_are_shares(&Overfull);
}

/// A planner that puts every app on every node, whatever their state.
struct Everywhere;

impl Planner for Everywhere {
    fn plan(&self, request: &PlanRequest) -> Result<PlanOutcome> {
        let mut assignment = request.current.clone();
        for app in &request.apps {
            assignment.apps.insert(
                app.name.clone(),
                AppPlacement {
                    nodes: request.nodes.iter().map(|n| n.id.clone()).collect(),
                    partitions: None,
                },
            );
        }
        assignment.version += 1;
        Ok(PlanOutcome {
            assignment,
            pending: Default::default(),
            blocked: Default::default(),
        })
    }
}

struct EverywhereFactory;

impl planner::PlannerFactory for EverywhereFactory {
    fn planner(&self) -> Arc<dyn Planner> {
        Arc::new(Everywhere)
    }
}

#[test]
#[should_panic(expected = "placed on the sick node")]
fn a_planner_using_unhealthy_nodes_is_caught() {
    planner::unhealthy_draining_and_cordoned_nodes_get_nothing_new(&EverywhereFactory);
}

/// A resource that takes any epoch it is given, older ones included.
#[derive(Default)]
struct Unfenced(Mutex<Option<Epoch>>);

#[async_trait]
impl ActiveResource for Unfenced {
    fn name(&self) -> &str {
        "unfenced"
    }

    async fn activate(&self, epoch: Epoch) -> Result<()> {
        *self.0.lock().unwrap() = Some(epoch);
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

struct UnfencedUnderTest(Arc<Unfenced>);

#[async_trait]
impl ResourceUnderTest for UnfencedUnderTest {
    fn resource(&self) -> Arc<dyn ActiveResource> {
        self.0.clone()
    }

    async fn observe(&self) -> Observed {
        match *self.0.0.lock().unwrap() {
            Some(e) => Observed::Held(Some(e)),
            None => Observed::Released,
        }
    }
}

struct UnfencedFactory;

#[async_trait]
impl ResourceFactory for UnfencedFactory {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        Box::new(UnfencedUnderTest(Arc::default()))
    }
}

#[tokio::test]
#[should_panic(expected = "must leave the resource held for term 9")]
async fn a_resource_taking_an_older_epoch_is_caught() {
    resource::an_older_epoch_is_refused_or_ignored(&UnfencedFactory).await;
}

/// A backend whose `stop` reports success but leaves the service running.
#[derive(Default)]
struct Leaky {
    running: Mutex<bool>,
}

#[async_trait]
impl Backend for Leaky {
    fn describe(&self) -> String {
        "leaky".into()
    }

    async fn start(&self, _epoch: Epoch) -> Result<()> {
        *self.running.lock().unwrap() = true;
        Ok(())
    }

    async fn stop(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }

    async fn status(&self) -> Result<BackendStatus> {
        Ok(if *self.running.lock().unwrap() {
            BackendStatus {
                state: BackendState::Running,
                id: Some("1".into()),
                restarts: 0,
            }
        } else {
            BackendStatus::stopped(0)
        })
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn logs_tail(&self, _n: usize) -> Vec<String> {
        Vec::new()
    }
}

struct LeakyUnderTest(Arc<Leaky>);

#[async_trait]
impl BackendUnderTest for LeakyUnderTest {
    fn backend(&self) -> Arc<dyn Backend> {
        self.0.clone()
    }

    async fn really_running(&self) -> bool {
        *self.0.running.lock().unwrap()
    }

    async fn crash(&self) {
        *self.0.running.lock().unwrap() = false;
    }
}

struct LeakyFactory;

#[async_trait]
impl BackendFactory for LeakyFactory {
    async fn fresh(&self) -> Box<dyn BackendUnderTest> {
        Box::new(LeakyUnderTest(Arc::default()))
    }
}

#[tokio::test]
#[should_panic(expected = "something still runs once stop returned Ok")]
async fn a_backend_whose_stop_leaves_the_service_running_is_caught() {
    backend::start_runs_once_and_stop_leaves_nothing(&LeakyFactory).await;
}

/// A propagator that writes a header of its own besides the W3C ones.
struct Chatty;

impl TracePropagator for Chatty {
    fn inject(&self, _span: &tracing::Span, headers: &mut Headers) {
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        headers.insert("x-trace-debug", "1");
    }

    fn extract(&self, _headers: &Headers, _span: &tracing::Span) {}
}

struct ChattyFactory;

impl TraceFactory for ChattyFactory {
    fn propagator(&self) -> &dyn TracePropagator {
        &Chatty
    }

    fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::none()
    }
}

#[test]
#[should_panic(expected = "non-W3C header \"x-trace-debug\"")]
fn a_propagator_writing_other_headers_is_caught() {
    trace::inject_writes_only_a_valid_w3c_context(&ChattyFactory);
}
