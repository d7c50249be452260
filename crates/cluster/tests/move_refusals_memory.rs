//! Operator requests that cannot do what they say are refused at once and change nothing
//! (in-memory nodes, paused time): a move to the node the app already runs on, a move "from" a
//! standby, a move of a Spread app, the approval of an unknown app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, Error, PlatformOptions};
use cluster_runtime::MoveRequest;
use cluster_testkit::scenario::{SimCluster, wait_until};

fn mv(app: &str, from: &str, to: &str) -> MoveRequest {
    MoveRequest {
        app: app.into(),
        from: from.into(),
        to: Some(to.into()),
        timeout: Duration::from_secs(60),
    }
}

#[tokio::test(start_paused = true)]
async fn impossible_moves_and_approvals_are_refused_at_once() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        let web = App::spread("web").unwrap();
        c.start_node(n, vec![db, web]).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    wait_until("every instance runs", Duration::from_secs(20), || {
        c.names().iter().all(|n| {
            let apps = &c.node(n).apps;
            apps.get("db").is_some_and(|a| a.is_running())
                && apps.get("web").is_some_and(|a| a.is_running())
        })
    })
    .await;
    let standby = c.names().into_iter().find(|n| *n != leader).unwrap();
    let p = c.node(&standby).platform.clone();
    let quick = |what: &'static str| async move {
        panic!("{what} was not refused at once");
    };
    // A move to the node it already runs on: refused, nothing changes.
    let err = tokio::select! {
        r = p.move_app(mv("db", &leader, &leader)) => r.unwrap_err(),
        () = tokio::time::sleep(Duration::from_secs(1)) => quick("move to the same node").await,
    };
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("same node"), "{err}");
    // A Singleton move "from" a standby (here: to itself, which used to make it the leader).
    let err = tokio::select! {
        r = p.move_app(mv("db", &standby, &standby)) => r.unwrap_err(),
        () = tokio::time::sleep(Duration::from_secs(1)) => quick("move from a standby").await,
    };
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    // A Singleton move "from" a standby to another node.
    let third = c
        .names()
        .into_iter()
        .find(|n| *n != leader && *n != standby)
        .unwrap();
    let err = tokio::select! {
        r = p.move_app(mv("db", &standby, &third)) => r.unwrap_err(),
        () = tokio::time::sleep(Duration::from_secs(2)) => quick("move from a standby").await,
    };
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("not the leader"), "{err}");
    // A Spread app cannot be moved: refused at once instead of a 60 s timeout.
    let other = c.names().into_iter().find(|n| *n != standby).unwrap();
    let err = tokio::select! {
        r = p.move_app(mv("web", &standby, &other)) => r.unwrap_err(),
        () = tokio::time::sleep(Duration::from_secs(1)) => quick("move of a Spread app").await,
    };
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("cordon or drain"), "{err}");
    // An approval for an app nobody runs.
    let err = p.approve_migration("nosuchapp").await.unwrap_err();
    assert!(matches!(err, Error::AppNotFound(_)), "{err}");
    p.approve_migration("db").await.unwrap();
    // Nothing moved.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.leaders("db"), vec![leader.clone()]);
    for n in c.names() {
        assert!(
            c.node(&n).apps.get("web").unwrap().is_running(),
            "web on {n}"
        );
    }
}
