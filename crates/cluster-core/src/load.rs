//! Node load measurement for the member record: the [`LoadProbe`] trait (the OS-specific
//! reader lives in the `cluster` facade) and [`FixedLoad`], a probe set by hand (tests, or
//! load measured elsewhere).

use std::sync::Mutex;

use crate::member::NodeLoad;

/// Measures the load of this node; sampled at every membership heartbeat.
///
/// # To ensure correctness
///
/// * `sample` is cheap and never blocks for long (it runs on the heartbeat path): read a
///   cached value or a small file, never a network call.
/// * Fractions are comparable across nodes: CPU as load per core, memory and disk as the used
///   share of the total (never more than 1000 ‰).
/// * `sample` may be called from any thread and from inside the async runtime.
///
/// Executable form: `cluster_testkit::conformance::load`.
/// * `None` means "unknown": such a node is never considered over a load limit.
pub trait LoadProbe: Send + Sync + 'static {
    /// The current load, if known.
    fn sample(&self) -> Option<NodeLoad>;
}

/// A probe returning whatever was last [`set`](FixedLoad::set).
#[derive(Debug, Default)]
pub struct FixedLoad(Mutex<Option<NodeLoad>>);

impl FixedLoad {
    /// A probe reporting `load`.
    pub fn new(load: Option<NodeLoad>) -> Self {
        Self(Mutex::new(load))
    }

    /// Reports `load` from now on (published with the next heartbeat).
    pub fn set(&self, load: Option<NodeLoad>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = load;
    }
}

impl LoadProbe for FixedLoad {
    fn sample(&self) -> Option<NodeLoad> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
