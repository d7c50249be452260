//! Auto-rebalance on in-memory nodes (paused time) with the facade planner: a joining empty node
//! is filled in waves of `max_concurrent` and the cluster then stays put; excluded apps, the
//! cooldown, the rate limit, maintenance windows, approvals and cancel are honoured; the status
//! reports progress.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster::placement::planner;
use cluster::{App, Mode, PlatformOptions};
use cluster_core::wire::rebalance::{
    AutoRebalanceConfig, MigrationPolicy, RateLimit, RebalancePhase, RebalanceStatus, TimeWindow,
};
use cluster_testkit::scenario::{SimCluster, wait_until};

const APPS: usize = 12;

fn apps() -> Vec<App> {
    (0..APPS)
        .map(|i| App::new(format!("a{i}"), Mode::Replicas { n: 1 }).unwrap())
        .collect()
}

/// app → node running it (each app runs once).
fn where_(c: &SimCluster) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in c.names() {
        for (name, app) in &c.node(&n).apps {
            if app.is_running() {
                out.insert(name.clone(), n.clone());
            }
        }
    }
    out
}

fn loads(c: &SimCluster) -> BTreeMap<String, usize> {
    let mut l: BTreeMap<String, usize> = c.names().into_iter().map(|n| (n, 0)).collect();
    for n in where_(c).values() {
        *l.entry(n.clone()).or_default() += 1;
    }
    l
}

fn balanced(c: &SimCluster) -> bool {
    let l = loads(c);
    let max = l.values().max().copied().unwrap_or(0);
    let min = l.values().min().copied().unwrap_or(0);
    where_(c).len() == APPS && max - min <= 1
}

fn config() -> AutoRebalanceConfig {
    let mut c = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 2,
        cooldown_period_ms: 60_000,
        ..AutoRebalanceConfig::default()
    };
    c.triggers.on_node_join = true;
    c
}

fn policy() -> MigrationPolicy {
    MigrationPolicy {
        cooldown_period_ms: 0,
        rate_limit: RateLimit::default(),
        ..MigrationPolicy::default()
    }
}

/// Three nodes running every app once, with `config`/`policy` stored cluster-wide.
async fn three_nodes(config: &AutoRebalanceConfig, policy: &MigrationPolicy) -> SimCluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        c.start_node(n, apps()).await.unwrap();
    }
    wait_until("every app runs once", Duration::from_secs(30), || {
        where_(&c).len() == APPS
    })
    .await;
    let p = &c.node("n1").platform;
    p.set_migration_policy(policy).await.unwrap();
    p.set_auto_rebalance(config).await.unwrap();
    // Let the controller see the settings and the membership before the join.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c
}

async fn status(c: &SimCluster) -> RebalanceStatus {
    c.node("n1").platform.rebalance_status().await.unwrap()
}

async fn wait_status(
    c: &SimCluster,
    what: &str,
    within: Duration,
    cond: impl Fn(&RebalanceStatus) -> bool,
) -> RebalanceStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = status(c).await;
        if cond(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {within:?}; status {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_joining_node_is_filled_in_bounded_waves_and_the_cluster_then_stays_put() {
    let mut c = three_nodes(&config(), &policy()).await;
    let seen: Arc<Mutex<Vec<RebalanceStatus>>> = Arc::default();
    let s2 = seen.clone();
    c.node("n2")
        .platform
        .on_rebalance(move |s| s2.lock().unwrap().push(s.clone()))
        .await
        .unwrap();
    c.start_node("n4", apps()).await.unwrap();
    let done = wait_status(&c, "run completed", Duration::from_secs(120), |s| {
        s.run >= 1 && s.phase == RebalancePhase::Completed
    })
    .await;
    assert!(done.reason.contains("n4 joined"), "{}", done.reason);
    assert!(done.total >= 2, "the join needs several moves: {done:?}");
    assert_eq!(done.completed, done.total);
    assert!(done.failed.is_empty(), "{:?}", done.failed);
    wait_until("balanced", Duration::from_secs(30), || balanced(&c)).await;
    assert!(loads(&c)["n4"] >= 2, "{:?}", loads(&c));
    // Progress was reported, never more than max_concurrent at a time.
    let events = seen.lock().unwrap().clone();
    assert!(events.iter().all(|s| s.active.len() <= 2), "{events:?}");
    assert!(
        events
            .iter()
            .any(|s| s.in_progress && s.completed > 0 && s.completed < s.total)
    );
    assert!(events.iter().any(|s| s.phase == RebalancePhase::Completed));
    // Hysteresis: nothing moves afterwards, even with continuous evaluation.
    let after = where_(&c);
    let mut eager = config();
    eager.interval_ms = 60_000;
    eager.cooldown_period_ms = 0;
    eager.triggers.on_app_count_imbalance = true;
    c.node("n3")
        .platform
        .set_auto_rebalance(&eager)
        .await
        .unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(where_(&c), after, "an app moved in a balanced cluster");
    }
    assert_eq!(status(&c).await.run, done.run, "no further run started");
}

#[tokio::test(start_paused = true)]
async fn excluded_apps_never_move() {
    let mut cfg = config();
    cfg.exclude_apps = (0..APPS - 3)
        .map(|i| cluster::AppName::new(format!("a{i}")).unwrap())
        .collect();
    let mut c = three_nodes(&cfg, &policy()).await;
    let before = where_(&c);
    c.start_node("n4", apps()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let after = where_(&c);
    for app in &cfg.exclude_apps {
        assert_eq!(before[app.as_str()], after[app.as_str()], "{app} moved");
    }
    let s = status(&c).await;
    assert!(
        s.migrations
            .iter()
            .all(|m| !cfg.exclude_apps.contains(&m.app)),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_and_the_cooldown_are_respected() {
    let mut pol = policy();
    pol.rate_limit = RateLimit {
        count: 1,
        window_ms: 600_000,
    };
    let mut c = three_nodes(&config(), &pol).await;
    c.start_node("n4", apps()).await.unwrap();
    let s = wait_status(&c, "first migration", Duration::from_secs(120), |s| {
        s.completed == 1
    })
    .await;
    assert!(s.total >= 2, "{s:?}");
    // One migration per 10 minutes.
    tokio::time::sleep(Duration::from_secs(8 * 60)).await;
    let s = status(&c).await;
    assert_eq!(s.completed, 1, "rate limit exceeded: {s:?}");
    assert!(s.active.is_empty(), "{s:?}");
    wait_status(
        &c,
        "second migration after the window",
        Duration::from_secs(3 * 60),
        |s| s.completed == 2,
    )
    .await;
    // Cooldown between runs: a run that ends is not followed by another within the period.
    let mut cfg = config();
    cfg.cooldown_period_ms = 20 * 60_000;
    let p = c.node("n1").platform.clone();
    p.set_migration_policy(&policy()).await.unwrap();
    p.set_auto_rebalance(&cfg).await.unwrap();
    let first = wait_status(&c, "run completed", Duration::from_secs(600), |s| {
        s.phase == RebalancePhase::Completed
    })
    .await;
    for n in ["n5", "n6"] {
        c.start_node(n, apps()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(15 * 60)).await;
    assert_eq!(
        status(&c).await.run,
        first.run,
        "a run started within the cooldown"
    );
    wait_status(
        &c,
        "run after the cooldown",
        Duration::from_secs(10 * 60),
        |s| s.run == first.run + 1,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn nothing_moves_outside_the_maintenance_windows() {
    let hour = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let mut pol = policy();
    pol.maintenance_windows = vec![TimeWindow {
        start: format!("{:02}:00", (hour + 3) % 24),
        end: format!("{:02}:00", (hour + 5) % 24),
        timezone: "UTC".into(),
    }];
    let mut c = three_nodes(&config(), &pol).await;
    let before = where_(&c);
    c.start_node("n4", apps()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10 * 60)).await;
    assert_eq!(where_(&c), before);
    let s = status(&c).await;
    assert!(
        s.paused
            .as_deref()
            .is_some_and(|p| p.contains("maintenance")),
        "{s:?}"
    );
    assert_eq!(s.run, 0);
    // Widening the window lets the pending trigger run.
    pol.maintenance_windows[0].start = format!("{:02}:00", hour);
    c.node("n2")
        .platform
        .set_migration_policy(&pol)
        .await
        .unwrap();
    wait_status(&c, "run inside the window", Duration::from_secs(120), |s| {
        s.phase == RebalancePhase::Completed
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn require_approval_blocks_until_approved() {
    let mut pol = policy();
    pol.require_approval = true;
    let mut c = three_nodes(&config(), &pol).await;
    let before = where_(&c);
    c.start_node("n4", apps()).await.unwrap();
    let s = wait_status(&c, "awaiting approval", Duration::from_secs(60), |s| {
        !s.awaiting_approval.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(where_(&c), before, "moved without approval");
    assert_eq!(status(&c).await.completed, 0);
    let app = s.awaiting_approval[0].app.clone();
    let to = s.awaiting_approval[0].to.clone().unwrap();
    c.node("n3")
        .platform
        .approve_migration(app.as_str())
        .await
        .unwrap();
    wait_status(
        &c,
        "approved migration done",
        Duration::from_secs(60),
        |s| s.completed == 1,
    )
    .await;
    assert_eq!(where_(&c)[app.as_str()], to.as_str());
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(status(&c).await.completed, 1, "only the approved app moved");
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_further_waves() {
    let mut pol = policy();
    pol.rate_limit = RateLimit {
        count: 1,
        window_ms: 600_000,
    };
    let mut c = three_nodes(&config(), &pol).await;
    c.start_node("n4", apps()).await.unwrap();
    let s = wait_status(&c, "first migration", Duration::from_secs(120), |s| {
        s.completed == 1
    })
    .await;
    assert!(s.total >= 2 && s.in_progress, "{s:?}");
    c.node("n2").platform.cancel_rebalance().await.unwrap();
    let s = wait_status(&c, "cancelled", Duration::from_secs(30), |s| {
        s.phase == RebalancePhase::Cancelled && !s.in_progress
    })
    .await;
    let placed = where_(&c);
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert_eq!(where_(&c), placed, "a migration started after cancel");
    assert_eq!(status(&c).await.completed, s.completed);
}
