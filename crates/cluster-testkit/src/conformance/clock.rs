//! Conformance suite for [`Clock`] (see its contract): `now` never goes backwards, advances
//! with `tokio::time` (so `sleep_until` of an instant derived from it wakes at that instant),
//! and `wall` is a plausible wall-clock time.
//!
//! The scenarios use only `tokio::time`, so they pass in real time and under paused time.

use std::time::{Duration, UNIX_EPOCH};

use cluster_core::Clock;

use super::announce;

/// Runs every scenario against `clock`.
pub async fn run_all(clock: &dyn Clock) {
    now_never_goes_backwards(clock).await;
    now_advances_with_tokio_time(clock).await;
    sleep_until_a_derived_instant_wakes_after_it(clock).await;
    wall_is_a_plausible_time(clock).await;
}

/// Successive readings of `now`, interleaved with yields and short sleeps, never decrease.
pub async fn now_never_goes_backwards(clock: &dyn Clock) {
    announce("clock", "now_never_goes_backwards");
    let mut last = clock.now();
    for i in 0..2_000u32 {
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
        let now = clock.now();
        assert!(now >= last, "now went backwards: {now:?} after {last:?}");
        last = now;
    }
}

/// After `tokio::time::sleep(d)` the clock has advanced by at least `d`.
pub async fn now_advances_with_tokio_time(clock: &dyn Clock) {
    announce("clock", "now_advances_with_tokio_time");
    for d in [Duration::from_millis(20), Duration::from_millis(150)] {
        let before = clock.now();
        tokio::time::sleep(d).await;
        let moved = clock.now().duration_since(before);
        assert!(
            moved >= d,
            "after sleeping {d:?} the clock moved only {moved:?}"
        );
    }
}

/// `tokio::time::sleep_until(clock.now() + d)` returns once `clock.now()` has reached that
/// instant (what lease deadlines rely on).
pub async fn sleep_until_a_derived_instant_wakes_after_it(clock: &dyn Clock) {
    announce("clock", "sleep_until_a_derived_instant_wakes_after_it");
    for d in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(120),
    ] {
        let target = clock.now() + d;
        tokio::time::sleep_until(target).await;
        let now = clock.now();
        assert!(
            now >= target,
            "sleep_until woke {:?} before the instant",
            target.duration_since(now)
        );
    }
}

/// `wall` is a plausible wall-clock time (after 2020), also after a sleep (display only: never
/// compared exactly).
pub async fn wall_is_a_plausible_time(clock: &dyn Clock) {
    announce("clock", "wall_is_a_plausible_time");
    let year_2020 = UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    for _ in 0..2 {
        let wall = clock.wall();
        assert!(wall > year_2020, "wall time {wall:?} lies before 2020");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
