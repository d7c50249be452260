//! Conformance suite for [`ActiveResource`] (see its contract): idempotent activation and
//! release, release without activation, fencing of an older epoch, and (for resources that
//! keep something outside the daemon) the deadline guard.
//!
//! The suite observes the resource's effect from outside the trait ([`ResourceUnderTest::observe`]:
//! the address on the interface, the process running, the database writable), so "returns
//! `Ok`" is checked against what really happened.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::Epoch;
use cluster_core::election::{ElectionState, Leadership};
use cluster_core::{ActiveResource, DeadlineWatch};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{DEADLINE, announce, ok};

/// What the resource's effect looks like from outside, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing of the resource is held (no address, no process, a read-only replica).
    Released,
    /// The effect is in place, for this term when the observer can tell (`None`: held, term
    /// not observable).
    Held(Option<Epoch>),
}

/// One fresh resource with a way to see its effect.
#[async_trait]
pub trait ResourceUnderTest: Send + Sync {
    /// The resource.
    fn resource(&self) -> Arc<dyn ActiveResource>;

    /// Asks the system (not the resource) what is held now.
    async fn observe(&self) -> Observed;
}

/// Hands out fresh resources.
///
/// # To ensure correctness
///
/// * [`ResourceFactory::fresh`] returns a resource that holds nothing, independent of the
///   resources returned before (its own address, unit, database).
#[async_trait]
pub trait ResourceFactory: Send + Sync {
    /// A new resource that holds nothing.
    async fn fresh(&self) -> Box<dyn ResourceUnderTest>;
}

/// Runs every scenario that applies to any resource (not the deadline guard, see
/// [`deadline_passing_without_renewal_releases`]).
pub async fn run_all(factory: &dyn ResourceFactory) {
    deactivate_without_activate_is_harmless(factory).await;
    activate_and_deactivate_are_idempotent(factory).await;
    an_older_epoch_is_refused_or_ignored(factory).await;
    reactivation_after_release_works(factory).await;
}

async fn observed(what: &str, r: &dyn ResourceUnderTest, want: Observed) {
    let got = r.observe().await;
    let fits = match (want, got) {
        (Observed::Released, Observed::Released) => true,
        (Observed::Held(Some(e)), Observed::Held(got)) => got.is_none_or(|g| g == e),
        (Observed::Held(None), Observed::Held(_)) => true,
        _ => false,
    };
    assert!(fits, "{what}: expected {want:?}, observed {got:?}");
}

/// `deactivate` of a resource never activated succeeds (twice) and holds nothing.
pub async fn deactivate_without_activate_is_harmless(factory: &dyn ResourceFactory) {
    announce("resource", "deactivate_without_activate_is_harmless");
    let r = factory.fresh().await;
    let res = r.resource();
    observed("fresh resource", r.as_ref(), Observed::Released).await;
    ok("deactivate never activated", res.deactivate().await);
    ok("deactivate never activated, again", res.deactivate().await);
    observed(
        "after deactivate without activate",
        r.as_ref(),
        Observed::Released,
    )
    .await;
}

/// `activate(E)` holds the effect when it returns; a second `activate(E)` is harmless;
/// `deactivate` leaves nothing; a second `deactivate` succeeds.
pub async fn activate_and_deactivate_are_idempotent(factory: &dyn ResourceFactory) {
    announce("resource", "activate_and_deactivate_are_idempotent");
    let r = factory.fresh().await;
    let res = r.resource();
    let e = Epoch(7);
    ok("activate(7)", res.activate(e).await);
    observed(
        "once activate(7) returned",
        r.as_ref(),
        Observed::Held(Some(e)),
    )
    .await;
    ok("activate(7) again", res.activate(e).await);
    observed(
        "after a second activate(7)",
        r.as_ref(),
        Observed::Held(Some(e)),
    )
    .await;
    ok("deactivate", res.deactivate().await);
    observed("once deactivate returned", r.as_ref(), Observed::Released).await;
    ok("deactivate again", res.deactivate().await);
    observed("after a second deactivate", r.as_ref(), Observed::Released).await;
}

/// While active for term 9, `activate(8)` is refused (an error) or ignored (`Ok`, the
/// resource still held for term 9): an older term never takes the resource over.
pub async fn an_older_epoch_is_refused_or_ignored(factory: &dyn ResourceFactory) {
    announce("resource", "an_older_epoch_is_refused_or_ignored");
    let r = factory.fresh().await;
    let res = r.resource();
    ok("activate(9)", res.activate(Epoch(9)).await);
    let outcome = res.activate(Epoch(8)).await;
    let got = r.observe().await;
    eprintln!(
        "conformance resource: activate(8) after activate(9) -> {outcome:?}, observed {got:?}"
    );
    assert!(
        got == Observed::Held(Some(Epoch(9))) || got == Observed::Held(None),
        "activate(8) after activate(9) ({outcome:?}) must leave the resource held for term 9, \
         observed {got:?}"
    );
    ok("deactivate", res.deactivate().await);
    observed("after deactivate", r.as_ref(), Observed::Released).await;
}

/// A released resource can be activated again for a newer term, and released again.
pub async fn reactivation_after_release_works(factory: &dyn ResourceFactory) {
    announce("resource", "reactivation_after_release_works");
    let r = factory.fresh().await;
    let res = r.resource();
    ok("activate(3)", res.activate(Epoch(3)).await);
    ok("deactivate", res.deactivate().await);
    ok("activate(4) after release", res.activate(Epoch(4)).await);
    observed(
        "once activate(4) returned",
        r.as_ref(),
        Observed::Held(Some(Epoch(4))),
    )
    .await;
    ok("deactivate", res.deactivate().await);
    observed("after the last deactivate", r.as_ref(), Observed::Released).await;
}

/// For resources that keep something outside the daemon: after `follow_deadline` and
/// `activate(E)` for a term whose deadline passes without a renewal (the daemon hung), the
/// effect is released by the resource's guard within the safety `margin`, without any call
/// on the resource.
pub async fn deadline_passing_without_renewal_releases(
    factory: &dyn ResourceFactory,
    margin: Duration,
) {
    announce("resource", "deadline_passing_without_renewal_releases");
    let r = factory.fresh().await;
    let res = r.resource();
    let epoch = Epoch(11);
    let lease = Duration::from_millis(1500);
    let (tx, rx) = watch::channel(leading(epoch, Instant::now() + lease));
    res.follow_deadline(DeadlineWatch::new(rx, margin));
    ok("activate(11)", res.activate(epoch).await);
    observed(
        "once activate(11) returned",
        r.as_ref(),
        Observed::Held(None),
    )
    .await;
    // Renew a few times: the effect must stay.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send_replace(leading(epoch, Instant::now() + lease));
        observed(
            "while the term is renewed",
            r.as_ref(),
            Observed::Held(None),
        )
        .await;
    }
    // Stop renewing: the guard releases after the deadline.
    let deadline = Instant::now() + lease;
    let give_up = deadline + margin + DEADLINE;
    loop {
        if r.observe().await == Observed::Released {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "the effect is still held {DEADLINE:?} after the deadline passed without renewal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        Instant::now() >= deadline - Duration::from_millis(100),
        "the guard released before the deadline"
    );
    drop(tx);
    // A deactivate afterwards still succeeds.
    ok("deactivate after the guard fired", res.deactivate().await);
    observed("after deactivate", r.as_ref(), Observed::Released).await;
}

fn leading(epoch: Epoch, deadline: Instant) -> ElectionState {
    ElectionState {
        leading: Some(Leadership { epoch, deadline }),
        ..ElectionState::default()
    }
}
