//! Singleton apps on three in-memory nodes, on paused time: election safety and hook semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster_core::{Epoch, Error};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::{SimCluster, wait_until};
use tokio::time::Instant;

#[derive(Default)]
struct Counts {
    active: AtomicUsize,
    passive: AtomicUsize,
    epochs: std::sync::Mutex<Vec<Epoch>>,
}

fn counted_app(counts: &Arc<Counts>) -> App {
    let app = App::singleton("db").unwrap();
    let c = counts.clone();
    app.on_active(move |ctx| {
        let c = c.clone();
        async move {
            c.active.fetch_add(1, Ordering::SeqCst);
            c.epochs
                .lock()
                .unwrap()
                .push(ctx.epoch.expect("on_active gets the epoch"));
            Ok(())
        }
    });
    let c = counts.clone();
    app.on_passive(move |_ctx| {
        let c = c.clone();
        async move {
            c.passive.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    app
}

async fn three_nodes() -> (SimCluster, Vec<Arc<Counts>>) {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let mut counts = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let c = Arc::new(Counts::default());
        cluster.start_node(n, vec![counted_app(&c)]).await.unwrap();
        counts.push(c);
    }
    (cluster, counts)
}

fn total(counts: &[Arc<Counts>], f: impl Fn(&Counts) -> usize) -> usize {
    counts.iter().map(|c| f(c)).sum()
}

#[tokio::test(start_paused = true)]
async fn exactly_one_leader_and_all_nodes_agree() {
    let (cluster, counts) = three_nodes().await;
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    wait_until("every node sees the leader", Duration::from_secs(5), || {
        cluster.names().iter().all(|n| {
            cluster.node(n).app("db").leader().map(|l| l.to_string()) == Some(leader.clone())
        })
    })
    .await;
    // Stable over many renewals, exactly one on_active.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(cluster.leaders("db"), vec![leader.clone()]);
    }
    assert_eq!(total(&counts, |c| c.active.load(Ordering::SeqCst)), 1);
    assert_eq!(total(&counts, |c| c.passive.load(Ordering::SeqCst)), 0);
    let l = cluster.node(&leader).app("db");
    assert_eq!(
        l.fencing_token(),
        l.election_state().unwrap().leading.map(|x| x.epoch)
    );
}

#[tokio::test(start_paused = true)]
async fn graceful_step_down_moves_leadership_at_once_with_higher_epoch() {
    let (cluster, counts) = three_nodes().await;
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let e1 = cluster.node(&first).app("db").fencing_token().unwrap();
    let started = Instant::now();
    cluster.node(&first).app("db").step_down().await.unwrap();
    assert!(!cluster.node(&first).app("db").is_leader());
    let (second, at) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    assert_ne!(second, first);
    assert!(
        at - started < Duration::from_millis(100),
        "handover took {:?}",
        at - started
    );
    let e2 = cluster.node(&second).app("db").fencing_token().unwrap();
    assert!(e2 > e1, "epochs must increase: {e1} then {e2}");
    assert_eq!(total(&counts, |c| c.active.load(Ordering::SeqCst)), 2);
    assert_eq!(total(&counts, |c| c.passive.load(Ordering::SeqCst)), 1);
    // Stepping down on a standby is refused.
    let err = cluster
        .node(&first)
        .app("db")
        .step_down()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotLeader {
                leader: Some(_),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn epochs_strictly_increase_and_hook_counts_are_exact_over_many_handovers() {
    let (cluster, counts) = three_nodes().await;
    for _ in 0..6 {
        let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
        cluster.node(&leader).app("db").step_down().await.unwrap();
    }
    cluster.wait_leader("db", Duration::from_secs(10)).await;
    let active = total(&counts, |c| c.active.load(Ordering::SeqCst));
    let passive = total(&counts, |c| c.passive.load(Ordering::SeqCst));
    assert_eq!(active, 7, "one on_active per acquisition");
    assert_eq!(passive, 6, "one on_passive per step-down");
    let mut epochs: Vec<Epoch> = counts
        .iter()
        .flat_map(|c| c.epochs.lock().unwrap().clone())
        .collect();
    let n = epochs.len();
    epochs.sort();
    epochs.dedup();
    assert_eq!(epochs.len(), n, "epochs never repeat");
}

#[tokio::test(start_paused = true)]
async fn crashed_leader_is_replaced_after_its_deadline_and_within_the_ttl() {
    let (mut cluster, _) = three_nodes().await;
    let options = PlatformOptions::fast();
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let deadline = cluster
        .node(&first)
        .app("db")
        .election_state()
        .unwrap()
        .leading
        .unwrap()
        .deadline;
    let crashed = Instant::now();
    cluster.crash_node(&first);
    let (second, at) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_ne!(second, first);
    assert!(
        at >= deadline,
        "successor led before the crashed leader's deadline"
    );
    let bound = options.election.lease_ttl + Duration::from_millis(50);
    assert!(
        at - crashed <= bound,
        "take-over took {:?} (bound {bound:?})",
        at - crashed
    );
    assert!(
        at - crashed >= options.election.act_window() - options.election.renew_interval,
        "take-over after {:?} is impossibly early",
        at - crashed
    );
}

#[tokio::test(start_paused = true)]
async fn partitioned_leader_demotes_itself_before_any_other_node_leads() {
    let (cluster, counts) = three_nodes().await;
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let old = cluster.node(&first).app("db").clone();
    cluster.network.partition(&first);
    let mut old_demoted_at = None;
    let mut successor = None;
    // Observe every 5 ms of paused time until someone else leads.
    for _ in 0..4000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let others: Vec<String> = cluster
            .leaders("db")
            .into_iter()
            .filter(|n| *n != first)
            .collect();
        let old_leads = old.is_leader();
        assert!(
            !old_leads || others.is_empty(),
            "the partitioned leader still acts while {others:?} leads"
        );
        if !old_leads && old_demoted_at.is_none() {
            old_demoted_at = Some(Instant::now());
        }
        if let Some(o) = others.first() {
            successor = Some((o.clone(), Instant::now()));
            break;
        }
    }
    let (successor, at) = successor.expect("a successor took over");
    let demoted = old_demoted_at.expect("the old leader demoted itself");
    assert!(demoted < at, "demotion must precede the successor");
    assert_ne!(successor, first);
    // The old leader ran on_passive exactly once.
    let idx = ["n1", "n2", "n3"].iter().position(|n| *n == first).unwrap();
    wait_until("old leader ran on_passive", Duration::from_secs(5), || {
        counts[idx].passive.load(Ordering::SeqCst) == 1
    })
    .await;
    // After the heal the old node stays a standby.
    cluster.network.heal(&first);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cluster.leaders("db"), vec![successor]);
}

#[tokio::test(start_paused = true)]
async fn failing_on_active_steps_down_and_another_node_takes_over() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let fail_on = "n1";
    for n in ["n1", "n2"] {
        let app = App::singleton("db").unwrap();
        let fail = n == fail_on;
        app.on_active(move |_ctx| async move {
            if fail {
                Err("disk not mounted".into())
            } else {
                Ok(())
            }
        });
        cluster.start_node(n, vec![app]).await.unwrap();
        if n == "n1" {
            // Let n1 win the first election.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(
        leader, "n2",
        "the node whose on_active fails never becomes leader"
    );
    assert!(!cluster.node("n1").app("db").is_leader());
}

#[tokio::test(start_paused = true)]
async fn newer_transition_cancels_a_stuck_on_active() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let token = Arc::new(std::sync::Mutex::new(None));
    let passive = Arc::new(AtomicUsize::new(0));
    let app = App::singleton("db").unwrap();
    let t = token.clone();
    app.set_hook_timeout(Duration::from_secs(3600));
    app.on_active(move |ctx| {
        *t.lock().unwrap() = Some(ctx.cancel.clone());
        async move {
            // Stuck until cancelled (the runtime also drops the future).
            ctx.cancel.cancelled().await;
            Ok(())
        }
    });
    let p = passive.clone();
    app.on_passive(move |_ctx| {
        let p = p.clone();
        async move {
            p.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    cluster.start_node("n1", vec![app.clone()]).await.unwrap();
    wait_until("n1 holds the lease", Duration::from_secs(5), || {
        app.fencing_token().is_some()
    })
    .await;
    assert!(
        !app.is_leader(),
        "is_leader stays false until on_active completed"
    );
    // Cut n1 off: its term ends at its deadline, which must cancel the stuck hook.
    cluster.network.partition("n1");
    wait_until("stuck on_active cancelled", Duration::from_secs(10), || {
        token
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|t| t.is_cancelled())
    })
    .await;
    wait_until(
        "on_passive undid the activation",
        Duration::from_secs(5),
        || passive.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert!(!app.is_leader());
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_of_the_leader_hands_over_at_once() {
    let (mut cluster, counts) = three_nodes().await;
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let stopped = Instant::now();
    cluster.stop_node(&first).await.unwrap();
    let (second, at) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    assert_ne!(second, first);
    assert!(
        at - stopped < Duration::from_millis(100),
        "took {:?}",
        at - stopped
    );
    assert_eq!(total(&counts, |c| c.passive.load(Ordering::SeqCst)), 1);
    // The stopped node left the membership at once.
    wait_until("n left membership", Duration::from_millis(100), || {
        cluster
            .node(&second)
            .platform
            .members()
            .iter()
            .all(|m| m.node_id.as_str() != first)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn hand_off_goes_to_the_named_standby() {
    let (cluster, _) = three_nodes().await;
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let target = cluster.names().into_iter().find(|n| *n != first).unwrap();
    let e1 = cluster.node(&first).app("db").fencing_token().unwrap();
    cluster
        .node(&first)
        .app("db")
        .hand_off(&target.parse().unwrap())
        .await
        .unwrap();
    let (next, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    assert_eq!(next, target);
    assert!(cluster.node(&next).app("db").fencing_token().unwrap() > e1);
}
