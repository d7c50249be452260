//! Conformance suite for [`LoadProbe`] (see its contract): reported fractions are shares
//! (memory and disk at most the whole), sampling works from many threads and from inside the
//! runtime, and a probe whose source can be set reports that source, `None` included.

use std::sync::Arc;

use cluster_core::LoadProbe;
use cluster_core::NodeLoad;

use super::announce;

/// The largest CPU value a probe may report (10 × the cores, in ‰ per core).
pub const MAX_CPU_PERMILLE: u32 = 10_000;

/// Runs the scenarios every probe passes.
pub async fn run_all(probe: Arc<dyn LoadProbe>) {
    samples_are_shares(probe.as_ref());
    sampling_is_safe_from_threads_and_tasks(probe).await;
}

fn check(what: &str, load: Option<NodeLoad>) {
    let Some(load) = load else { return };
    assert!(
        load.memory <= 1000,
        "{what}: memory {}‰ is more than the whole",
        load.memory
    );
    assert!(
        load.disk <= 1000,
        "{what}: disk {}‰ is more than the whole",
        load.disk
    );
    assert!(
        load.cpu <= MAX_CPU_PERMILLE,
        "{what}: cpu {}‰ per core is beyond the clamp",
        load.cpu
    );
}

/// Every sample (when known) reports memory and disk as shares (≤ 1000 ‰) and CPU per core
/// within the clamp.
pub fn samples_are_shares(probe: &dyn LoadProbe) {
    announce("load", "samples_are_shares");
    for _ in 0..20 {
        check("sample", probe.sample());
    }
}

/// Sampling from 4 threads at once and from async tasks neither panics nor blocks the
/// runtime, and gives valid samples.
pub async fn sampling_is_safe_from_threads_and_tasks(probe: Arc<dyn LoadProbe>) {
    announce("load", "sampling_is_safe_from_threads_and_tasks");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = probe.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    check("sample on a thread", p.sample());
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let p = probe.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    check("sample in a task", p.sample());
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok(), "sampling panicked on a thread");
    }
    for t in tasks {
        assert!(t.await.is_ok(), "sampling panicked in a task");
    }
}

/// For probes with a settable source: the next sample reports what `set` stored, also
/// `None` ("unknown", never over a limit).
pub fn reports_its_source(probe: &dyn LoadProbe, set: &dyn Fn(Option<NodeLoad>)) {
    announce("load", "reports_its_source");
    for load in [
        Some(NodeLoad::from_fractions(0.5, 0.25, 1.0)),
        None,
        Some(NodeLoad::from_fractions(3.0, 0.0, 0.0)),
        None,
    ] {
        set(load);
        assert_eq!(probe.sample(), load, "the sample after set({load:?})");
        check("set sample", probe.sample());
    }
}
