//! The per-app migration lock on in-memory nodes (paused time): while one move of an app is
//! in flight, a second move or a drain touching the app fails at once with `LockHeld`; once
//! the first ends the lock is free again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, PlatformOptions};
use cluster_core::runtime::{DrainOptions, MoveRequest};
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
