//! The per-app migration lock on in-memory nodes (paused time): while one move of an app is
//! in flight, a second move or a drain touching the app fails at once with `LockHeld`; once
//! the first ends the lock is free again. A move whose requester died stops steering placement
//! once its lock expired (fencing), and is never executed later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, PlatformOptions};
use cluster_runtime::{DrainOptions, MoveRequest};
use cluster_testkit::scenario::{SimCluster, wait_until};

fn running(c: &SimCluster, app: &str) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get(app).is_some_and(|a| a.is_running()))
        .collect()
}

fn mv(app: &str, from: &str, to: &str) -> MoveRequest {
    MoveRequest {
        app: app.into(),
        from: from.into(),
        to: Some(to.into()),
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_migrations_of_one_app_are_refused_with_lock_held() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        // A slow hand-off: the first move stays in flight for a while.
        db.on_migration_start(|_, _| async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        });
        let other = App::singleton("other").unwrap();
        c.start_node(n, vec![db, other]).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    wait_until("standbys", Duration::from_secs(20), || {
        running(&c, "db").len() == 3
    })
    .await;
    let others: Vec<String> = c.names().into_iter().filter(|n| *n != leader).collect();
    let (t1, t2) = (others[0].clone(), others[1].clone());
    let p1 = c.node(&t1).platform.clone();
    let first = tokio::spawn({
        let (leader, t1) = (leader.clone(), t1.clone());
        async move { p1.move_app(mv("db", &leader, &t1)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!first.is_finished(), "the first move is still in flight");
    // A second move of the same app, from another node: refused, naming the holder.
    let err = c
        .node(&t2)
        .platform
        .move_app(mv("db", &leader, &t2))
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::LockHeld { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("/move/") && msg.contains("db"), "{msg}");
    // A drain of the leader's node touches db too: refused before anything changes.
    let err = c
        .node(&t2)
        .platform
        .drain_node(&leader, DrainOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::LockHeld { .. }), "{err}");
    assert!(
        !c.node(&t2).platform.is_cordoned(&leader).await.unwrap(),
        "a refused drain does not cordon"
    );
    // Another app is not affected by db's lock.
    let other_leader = c.wait_leader("other", Duration::from_secs(5)).await.0;
    let target = c.names().into_iter().find(|n| *n != other_leader).unwrap();
    wait_until("other standbys", Duration::from_secs(20), || {
        running(&c, "other").len() == 3
    })
    .await;
    c.node(&t2)
        .platform
        .move_app(mv("other", &other_leader, &target))
        .await
        .unwrap();
    // The first move completes, exactly to its target; db never had two leaders.
    let moved = first.await.unwrap().unwrap();
    assert_eq!(moved.as_str(), t1);
    assert_eq!(c.leaders("db"), vec![t1.clone()]);
    // The lock is free again: the next move goes through.
    let moved = c
        .node(&t2)
        .platform
        .move_app(mv("db", &t1, &t2))
        .await
        .unwrap();
    assert_eq!(moved.as_str(), t2);
    assert_eq!(c.leaders("db"), vec![t2]);
}

#[tokio::test(start_paused = true)]
async fn a_move_whose_requester_died_is_dropped_once_its_lock_expires() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    let hang = Arc::new(AtomicBool::new(true));
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        if n == "n3" {
            // n3 cannot get ready while `hang` is set: the move to it stays pending.
            let hang = hang.clone();
            db.on_start(move |_| {
                let hang = hang.load(Ordering::SeqCst);
                async move {
                    if hang {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    Ok(())
                }
            });
        }
        c.start_node(n, vec![db]).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    let requester = if leader == "n1" { "n2" } else { "n1" };
    let p = c.node(requester).platform.clone();
    let pending = tokio::spawn({
        let leader = leader.clone();
        async move { p.move_app(mv("db", &leader, "n3")).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!pending.is_finished());
    let preferred = |c: &SimCluster| {
        let c = c.node(&leader).platform.clone();
        async move {
            let r = c.assignment().await.unwrap().unwrap();
            r.assignment.apps[&cluster::AppName::new("db").unwrap()].nodes[0].to_string()
        }
    };
    assert_eq!(preferred(&c).await, "n3", "the move steers the assignment");
    // The requester dies mid-move: its lock is no longer renewed.
    c.crash_node(requester);
    pending.abort();
    // Once the lock expired the move is dropped: the preference returns to the leader...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while preferred(&c).await != leader {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale move still steers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and when n3 gets ready later, no hand-off happens.
    hang.store(false, Ordering::SeqCst);
    wait_until("n3 ready", Duration::from_secs(60), || {
        c.node("n3").app("db").role() == cluster::Role::Standby
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.leaders("db"), vec![leader.clone()]);
    // The lock is free: a new move goes through.
    let moved = c
        .node(&leader)
        .platform
        .move_app(mv("db", &leader, "n3"))
        .await
        .unwrap();
    assert_eq!(moved.as_str(), "n3");
}

#[tokio::test(start_paused = true)]
async fn an_auto_rebalance_step_waits_for_a_migration_lock_held_elsewhere() {
    use cluster::Mode;
    use cluster_core::kv::{BucketConfig, KvStore};
    use cluster_core::lock::Lock;
    use cluster_core::wire::rebalance::{AutoRebalanceConfig, MigrationPolicy, RateLimit};
    use cluster_runtime::KvLock;

    const APPS: usize = 4;
    let apps = || -> Vec<App> {
        (0..APPS)
            .map(|i| App::new(format!("a{i}"), Mode::Replicas { n: 1 }).unwrap())
            .collect()
    };
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    c.start_node("n1", apps()).await.unwrap();
    wait_until("every app runs on n1", Duration::from_secs(30), || {
        (0..APPS).all(|i| running(&c, &format!("a{i}")) == vec!["n1".to_owned()])
    })
    .await;
    let p = c.node("n1").platform.clone();
    p.set_migration_policy(&MigrationPolicy {
        cooldown_period_ms: 0,
        rate_limit: RateLimit::default(),
        ..MigrationPolicy::default()
    })
    .await
    .unwrap();
    let mut config = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 2,
        cooldown_period_ms: 0,
        ..AutoRebalanceConfig::default()
    };
    config.triggers.on_node_join = true;
    p.set_auto_rebalance(&config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Another migration (an operator's, on node "op") holds every app's migration lock.
    let store = c.network.kv("op");
    let bucket = store
        .bucket(BucketConfig::new("prod_locks").with_per_key_ttl())
        .await
        .unwrap();
    let mut held = Vec::new();
    for i in 0..APPS {
        let lock = KvLock::new(
            bucket.clone(),
            format!("migration.a{i}"),
            "op".parse().unwrap(),
            format!("op/operator-move-a{i}"),
            PlatformOptions::fast().locks,
            Arc::new(cluster_core::clock::TokioClock),
        )
        .unwrap();
        assert!(lock.try_lock().await.unwrap());
        held.push(lock);
    }
    // n2 joins: the join run plans moves onto it, but every step waits for its lock, visibly.
    c.start_node("n2", apps()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = p.rebalance_status().await.unwrap();
        if !s.deferred.is_empty() {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deferred step: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status
            .deferred
            .iter()
            .all(|d| d.reason.contains("op/operator-move")),
        "the reason names the holder: {status:?}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    for i in 0..APPS {
        assert_eq!(
            running(&c, &format!("a{i}")),
            vec!["n1".to_owned()],
            "nothing moves while its lock is held elsewhere"
        );
    }
    // The other migrations end: the waiting steps proceed and n2 gets its share.
    for lock in held {
        lock.unlock().await.unwrap();
    }
    wait_until("n2 runs its share", Duration::from_secs(60), || {
        (0..APPS)
            .filter(|i| running(&c, &format!("a{i}")) == vec!["n2".to_owned()])
            .count()
            == APPS / 2
    })
    .await;
}
