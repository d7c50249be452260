//! The simulator's own suite: a CI smoke of seeds that must hold every invariant, determinism
//! of the trace, a regression seed, and planted bugs the checker must catch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_sim::summary::run_seeds;
use cluster_sim::{PlantedBug, Report, SimOptions, run_seed};

fn run(seed: u64, minutes: u64, bug: Option<PlantedBug>) -> Report {
    let mut options = SimOptions::from_seed(seed, Duration::from_secs(minutes * 60));
    options.bug = bug;
    run_seed(options).unwrap()
}

/// The CI smoke: 10 seeds of 3 simulated minutes each (about 30 s of wall time here). The long
/// version is `cargo xtask sim --seeds N`.
#[test]
fn smoke_seeds_hold_every_invariant() {
    let summary = run_seeds(1_000, 10, Duration::from_secs(180), |r| println!("{r}")).unwrap();
    println!("SUMMARY {summary}");
    assert!(summary.faults >= 200, "too few faults injected: {summary}");
    assert!(summary.terms >= 10, "too few leadership terms: {summary}");
    assert_eq!(summary.violations, 0, "{summary}");
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = run(3, 1, None);
    let b = run(3, 1, None);
    assert!(a.events > 100 && a.faults > 5, "{a}");
    assert_eq!(a.trace.lines(), b.trace.lines());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(run(4, 1, None).trace_hash, a.trace_hash);
}

/// Seed 1 (one minute) found that `Platform::abort` left the app's tasks running: the
/// "crashed" n2 kept its election alive, took the lease over once its name was reachable
/// again and renewed it forever with no instance acting on it — no leader until the end.
#[test]
fn regression_seed_1_a_crashed_node_stops_campaigning() {
    let r = run(1, 1, None);
    assert!(r.violations.is_empty(), "{r}");
    assert!(r.recovery.is_some(), "{r}");
}

/// The planted bug: the app keeps writing for a lease after it lost leadership and the
/// register does not fence. The checker reports stale writes within a few seeds.
#[test]
fn planted_unfenced_writes_are_reported() {
    let found = (0..4)
        .map(|seed| run(seed, 2, Some(PlantedBug::UnfencedWrites)))
        .find(|r| {
            r.violations
                .iter()
                .any(|(v, _)| v.what.contains("stale write accepted"))
        });
    let report = found.expect("no seed of 0..4 reported the planted bug");
    println!("{report}");
    assert!(
        report
            .to_string()
            .contains("reproduce: cargo xtask sim --seed")
    );
}

/// The same app bug against a fencing register: the stale writes arrive and are refused, and
/// nothing is reported — fencing is what keeps a late leader harmless.
#[test]
fn fencing_refuses_the_writes_of_an_app_that_ignores_demotion() {
    let unfenced = run(2, 2, Some(PlantedBug::UnfencedWrites));
    assert!(!unfenced.violations.is_empty(), "{unfenced}");
    let fenced = run(2, 2, Some(PlantedBug::IgnoreDemotion));
    assert!(fenced.writes_refused > 0, "{fenced}");
    assert!(fenced.violations.is_empty(), "{fenced}");
}

/// Open bug found by seed 210 (5 minutes): epochs go backwards after an attacker deletes the
/// epoch floor. The floor had been raised (to 10^9, by the attacker, then kept by the nodes),
/// n2 led both apps with epochs around 1000000726 and then the floor was deleted: every other
/// node now rejects n2's renewals (epoch hint above `0 + revision`), and n1, restarted since
/// (no memory of the high epochs), takes the lease over when n2 is partitioned with epoch 853
/// — below the last term's. The register refuses all of n1's writes (fencing holds, but the
/// resource is closed to every new leader until revisions pass 10^9). Fixing it needs a rule
/// for a lowered floor (e.g. the leader restores the floor it acquired under, or rejected
/// records whose hint exceeds `floor + revision` raise the floor on takeover); see
/// docs/RELIABILITY.md.
///
/// Until that rule exists this test pins what holds and what does not: fencing holds (no stale
/// or shared epoch is accepted by the register, never two leaders outside a tampering window),
/// and the only violations are new terms whose epoch is not above the last one. When the floor
/// bug is fixed the list of epoch regressions becomes empty and this still passes; then assert
/// `r.violations.is_empty()` instead.
#[test]
fn regression_seed_210_fencing_holds_after_the_floor_is_deleted() {
    let r = run(210, 5, None);
    let (regressions, others): (Vec<_>, Vec<_>) = r
        .violations
        .iter()
        .partition(|(v, _)| v.what.contains("not above epoch"));
    assert!(
        others.is_empty(),
        "fencing or single-leader violation:\n{r}"
    );
    assert!(
        regressions.len() <= 3,
        "more epoch regressions than the known floor bug gives (3):\n{r}"
    );
}
