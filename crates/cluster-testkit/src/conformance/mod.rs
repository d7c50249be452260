//! Conformance suites: executable versions of the "To ensure correctness" contracts of the core
//! traits, runnable against any implementation.
//!
//! Each suite has a `run_all` entry point and one `pub async fn` per scenario. A factory hands
//! out independent connections ("two clients") to one backing store or network; every scenario
//! uses fresh, unique bucket names or subjects, so suites can run against a shared server
//! ([`kv::KvFactory`], [`transport::TransportFactory`]).
//!
//! The suites are real-time friendly: they wait for conditions with generous deadlines instead
//! of exact timing (on NATS a TTL expiry arrives about 100 ms after the TTL) and they use only
//! `tokio::time`, so they also pass under paused time against the in-memory implementations.
//!
//! # Panics
//!
//! Scenarios report a contract violation (or an unexpected error) by panicking with a message
//! naming the scenario, like assertions in a test.

// Suites are test code: a failed expectation is reported by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audit;
pub mod backend;
pub mod clock;
pub mod election;
pub mod kv;
pub mod load;
pub mod lock;
mod memory_factory;
pub mod planner;
pub mod resource;
pub mod stream;
pub mod trace;
pub mod transport;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How long a suite waits for something that should happen "soon" (an event, a message).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh name made of `[a-z0-9_]`, unique across processes: `<base>_<12 hex digits>`.
pub fn unique_name(base: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}_{}", &id[..12])
}

/// Awaits `fut` for at most [`DEADLINE`], panicking with `what` when it takes longer.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: did not happen within {DEADLINE:?}"),
    }
}

/// Unwraps `result`, panicking with `what` and the error.
pub(crate) fn ok<T, E: Debug>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error {e:?}"),
    }
}

/// Announces a scenario on stderr (shown by the test harness when a scenario fails).
pub(crate) fn announce(suite: &str, scenario: &str) {
    eprintln!("conformance {suite}: {scenario}");
}
