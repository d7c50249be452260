//! The state shared by the driver, the sampler and the writers of one run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_runtime::App;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checker::Checker;
use crate::register::{Register, Write};
use crate::trace::Trace;

/// A live node as the checker sees it: its apps and its writer tasks.
pub(crate) struct LiveNode {
    pub(crate) apps: BTreeMap<String, App>,
    pub(crate) writers: Vec<JoinHandle<()>>,
}

/// Everything one run records and checks.
pub(crate) struct World {
    pub(crate) start: Instant,
    pub(crate) trace: Trace,
    pub(crate) checker: Checker,
    pub(crate) registers: BTreeMap<String, Register>,
    pub(crate) live: BTreeMap<String, LiveNode>,
    pub(crate) faults: u64,
}

/// The world behind a lock (the run is single-threaded; the lock is never held across an
/// `.await`).
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<World>>);

impl Shared {
    pub(crate) fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl World {
    /// Simulated time since the start of the run.
    pub(crate) fn now(&self) -> Duration {
        Instant::now() - self.start
    }

    /// Records an event in the trace.
    pub(crate) fn record(&mut self, event: impl Into<String>) {
        let at = self.now();
        self.trace.record(at, event);
    }

    /// A write reaches `app`'s register.
    pub(crate) fn deliver(&mut self, app: &str, w: Write) {
        let Some(register) = self.registers.get_mut(app) else {
            return;
        };
        let last = register.accepted().last().cloned();
        let ok = register.append(w.clone());
        self.record(format!(
            "write {app} epoch={} node={} n={} {}",
            w.epoch,
            w.node,
            w.n,
            if ok { "accepted" } else { "refused" }
        ));
        if ok {
            let at = self.now();
            let index = self.trace.len() - 1;
            self.checker.accepted(at, index, app, last.as_ref(), &w);
        }
    }

    /// Samples every live node's `is_leader()` for every app and checks the invariants.
    pub(crate) fn sample(&mut self) {
        let apps: Vec<String> = self.registers.keys().cloned().collect();
        for app in apps {
            let leaders: BTreeMap<String, cluster_core::Epoch> = self
                .live
                .iter()
                .filter_map(|(node, n)| {
                    let a = n.apps.get(&app)?;
                    if !a.is_leader() {
                        return None;
                    }
                    a.fencing_token().map(|e| (node.clone(), e))
                })
                .collect();
            let at = self.now();
            let index = self.trace.len().saturating_sub(1);
            let desc = format!("{leaders:?}");
            if self.checker.sample(at, index, &app, leaders) {
                self.record(format!("leaders {app} {desc}"));
            }
        }
    }
}
