//! Rebalancing through the library API (in-memory nodes, paused time): `rebalance_plan` shows
//! what a rebalance would do without changing anything, `rebalance_app` executes one app's
//! steps as moves; unknown apps are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, Error, Mode, PlatformOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};

const APPS: usize = 8;

fn apps() -> Vec<App> {
    (0..APPS)
        .map(|i| App::new(format!("a{i}"), Mode::Replicas { n: 1 }).unwrap())
        .collect()
}

fn runs_on(c: &SimCluster, app: &str) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get(app).is_some_and(|a| a.is_running()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn plan_changes_nothing_and_rebalance_app_moves_that_app() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2"] {
        c.start_node(n, apps()).await.unwrap();
    }
    wait_until("every app placed", Duration::from_secs(30), || {
        (0..APPS).all(|i| runs_on(&c, &format!("a{i}")).len() == 1)
    })
    .await;
    // An empty node joins; auto-rebalance is off, so nothing moves by itself.
    c.start_node("n3", apps()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!((0..APPS).all(|i| runs_on(&c, &format!("a{i}")) != ["n3"]));
    let p = c.node("n3").platform.clone();
    let plan = p.rebalance_plan(None).await.unwrap();
    assert!(!plan.migrations.is_empty(), "{plan:?}");
    assert!(plan.imbalance_after < plan.imbalance_before, "{plan:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        (0..APPS).all(|i| runs_on(&c, &format!("a{i}")) != ["n3"]),
        "a plan changes nothing"
    );
    // Rebalance one app of the plan: it runs on the planned target afterwards.
    let step = plan.migrations[0].clone();
    let done = p
        .rebalance_app(step.app.as_str(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done.migrations.len(), 1, "{done:?}");
    let target = done.migrations[0].to.clone().unwrap();
    wait_until(
        "the app runs on its target",
        Duration::from_secs(30),
        || runs_on(&c, step.app.as_str()) == [target.to_string()],
    )
    .await;
    // Unknown apps are refused.
    let err = p
        .rebalance_app("nope", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AppNotFound(_)), "{err}");
    let err = p.rebalance_plan(Some("nope")).await.unwrap_err();
    assert!(matches!(err, Error::AppNotFound(_)), "{err}");
}
