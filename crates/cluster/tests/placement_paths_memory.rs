//! Placement paths on in-memory nodes (paused time): a Singleton move whose target never
//! becomes ready times out and rolls back; auto-rebalance pauses on version skew (rolling
//! upgrade) and resumes after it; the cron trigger starts a run; a controller failover in the
//! middle of a run neither repeats nor loses a migration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use cluster::core::audit::AuditFilter;
use cluster::placement::planner;
use cluster::{App, Mode, Platform, PlatformOptions};
use cluster_core::clock::Clock;
use cluster_core::wire::rebalance::{
    AutoRebalanceConfig, MigrationPolicy, RateLimit, RebalancePhase, RebalanceStatus,
};
use cluster_runtime::MoveRequest;
use cluster_testkit::scenario::{SimCluster, wait_until};
use tokio::time::Instant;

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn running(c: &SimCluster, app: &str) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get(app).is_some_and(|a| a.is_running()))
        .collect()
}

async fn events(p: &Platform) -> Vec<(String, Option<String>, serde_json::Value)> {
    let reader = p.audit();
    reader.flush().await;
    let page = reader
        .query(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    page.entries
        .iter()
        .map(|e| {
            (
                e.record.event(),
                e.record.app.as_ref().map(ToString::to_string),
                e.record.data.clone(),
            )
        })
        .collect()
}

/// The first (preferred leader) node of `app` in the assignment.
async fn preferred(c: &SimCluster, app: &str) -> String {
    let r = c.node("n1").platform.assignment().await.unwrap().unwrap();
    r.assignment.apps[&cluster::AppName::new(app).unwrap()].nodes[0].to_string()
}

#[tokio::test(start_paused = true)]
async fn a_singleton_move_whose_target_never_becomes_ready_times_out_and_rolls_back() {
    init();
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    let hang = Arc::new(AtomicBool::new(true));
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        if n == "n3" {
            // The target's instance does not get ready while `hang` is set (each start
            // attempt runs into the hook timeout and is retried).
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
    let (source, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    assert_ne!(source, "n3");
    for n in c.names() {
        c.node(&n).platform.audit().flush().await;
    }
    let err = c
        .node("n3")
        .platform
        .move_app(MoveRequest {
            app: "db".into(),
            from: source.clone(),
            to: Some("n3".into()),
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::Timeout(_)), "{err}");
    // Leadership never left the source.
    assert_eq!(c.leaders("db"), vec![source.clone()]);
    // The migration is recorded as failed.
    for n in c.names() {
        c.node(&n).platform.audit().flush().await;
    }
    let ev = events(&c.node("n1").platform).await;
    let failed: Vec<_> = ev
        .iter()
        .filter(|(e, a, _)| e == "placement.migration.failed" && a.as_deref() == Some("db"))
        .collect();
    assert_eq!(failed.len(), 1, "{ev:?}");
    assert_eq!(failed[0].2["from_node"], source.as_str());
    assert_eq!(failed[0].2["to_node"], "n3");
    // Rolled back: no move request is left behind, the source is the preferred leader again,
    // and when the target gets ready later nothing moves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        preferred(&c, "db").await,
        source,
        "the move's preference is withdrawn"
    );
    hang.store(false, Ordering::SeqCst);
    wait_until("target ready later", Duration::from_secs(90), || {
        c.node("n3").app("db").role() == cluster::Role::Standby
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.leaders("db"), vec![source.clone()], "no late hand-off");
    assert_eq!(preferred(&c, "db").await, source);
}

const APPS: usize = 12;

/// Twelve single-instance apps; each start is recorded in `starts` (app → nodes) while
/// `slow` is set, and then takes 6 s (a migration stays in flight meanwhile).
fn apps(node: &str, slow: &Arc<AtomicBool>, starts: &Starts) -> Vec<App> {
    (0..APPS)
        .map(|i| {
            let app = App::new(format!("a{i}"), Mode::Replicas { n: 1 }).unwrap();
            let (slow, starts, node, name) = (
                slow.clone(),
                starts.clone(),
                node.to_owned(),
                format!("a{i}"),
            );
            app.on_start(move |_| {
                let slow = slow.load(Ordering::SeqCst);
                if slow {
                    starts
                        .lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default()
                        .push(node.clone());
                }
                async move {
                    if slow {
                        tokio::time::sleep(Duration::from_secs(6)).await;
                    }
                    Ok(())
                }
            });
            app
        })
        .collect()
}

type Starts = Arc<std::sync::Mutex<BTreeMap<String, Vec<String>>>>;

fn rebalance_config() -> AutoRebalanceConfig {
    let mut c = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 1,
        cooldown_period_ms: 3_600_000,
        ..AutoRebalanceConfig::default()
    };
    c.triggers.on_node_join = true;
    c.triggers.on_node_leave = false;
    c
}

fn lenient_policy() -> MigrationPolicy {
    MigrationPolicy {
        cooldown_period_ms: 0,
        migration_timeout_ms: 120_000,
        rate_limit: RateLimit::default(),
        ..MigrationPolicy::default()
    }
}

/// A node built by hand (for builder options the harness does not expose).
struct Manual {
    platform: Platform,
    apps: Vec<App>,
    run: tokio::task::JoinHandle<cluster::Result<()>>,
}

impl Manual {
    fn runs(&self) -> usize {
        self.apps.iter().filter(|a| a.is_running()).count()
    }

    async fn stop(self) {
        self.platform.shutdown();
        let _ = self.run.await;
    }
}

async fn manual(
    c: &SimCluster,
    node: &str,
    apps: Vec<App>,
    configure: impl FnOnce(cluster_runtime::PlatformBuilder) -> cluster_runtime::PlatformBuilder,
) -> Manual {
    let builder = Platform::builder("prod", node)
        .options(PlatformOptions::fast())
        .transport(c.network.transport(node))
        .kv_store(c.network.kv(node))
        .audit(c.network.audit())
        .planner(planner());
    let platform = configure(builder).build().unwrap();
    for a in &apps {
        platform.register(a).unwrap();
    }
    let runner = platform.clone();
    let run = tokio::spawn(async move { runner.run().await });
    platform.wait_started().await.unwrap();
    Manual {
        platform,
        apps,
        run,
    }
}

async fn wait_status(
    p: &Platform,
    what: &str,
    within: Duration,
    cond: impl Fn(&RebalanceStatus) -> bool,
) -> RebalanceStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = p.rebalance_status().await.unwrap();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}; status {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn auto_rebalance_pauses_on_version_skew_and_resumes_after_the_upgrade() {
    init();
    let slow = Arc::new(AtomicBool::new(false));
    let starts: Starts = Arc::default();
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        c.start_node(n, apps(n, &slow, &starts)).await.unwrap();
    }
    let p = c.node("n1").platform.clone();
    let mut config = rebalance_config();
    config.cooldown_period_ms = 0;
    p.set_migration_policy(&lenient_policy()).await.unwrap();
    p.set_auto_rebalance(&config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs_before = p.rebalance_status().await.unwrap().run;
    // n4 joins running another software version: a rolling upgrade is under way.
    let n4 = manual(&c, "n4", apps("n4", &slow, &starts), |b| {
        b.software_version("99.0.0")
    })
    .await;
    let s = wait_status(&p, "paused by skew", Duration::from_secs(10), |s| {
        s.paused
            .as_deref()
            .is_some_and(|r| r.contains("version skew"))
    })
    .await;
    assert!(s.paused.unwrap().contains("99.0.0"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let s = p.rebalance_status().await.unwrap();
    assert_eq!(s.run, runs_before, "no run while versions differ: {s:?}");
    assert!(s.paused.is_some(), "{s:?}");
    assert_eq!(n4.runs(), 0, "nothing moved onto the new node");
    // The upgrade completes: n4 restarts with the cluster's version and gets its share.
    n4.stop().await;
    let n4 = manual(&c, "n4", apps("n4", &slow, &starts), |b| b).await;
    wait_until("n4 filled", Duration::from_secs(120), || n4.runs() >= 2).await;
    let done = wait_status(&p, "run completed", Duration::from_secs(120), |s| {
        s.run > runs_before && s.phase == RebalancePhase::Completed
    })
    .await;
    assert!(done.paused.is_none(), "{done:?}");
    assert!(done.reason.contains("n4"), "{}", done.reason);
    n4.stop().await;
}

/// A clock whose wall time starts at `base` and advances with tokio's (paused) time.
#[derive(Debug)]
struct PausedClock {
    start: Instant,
    base: SystemTime,
}

impl Clock for PausedClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        self.base + (Instant::now() - self.start)
    }
}

#[tokio::test(start_paused = true)]
async fn the_cron_schedule_starts_a_run_at_its_time_and_not_before() {
    init();
    // 2026-01-01T01:58:00Z; the schedule fires daily at 02:00 UTC.
    let clock = Arc::new(PausedClock {
        start: Instant::now(),
        base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 7_080),
    });
    let two_am = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 7_200);
    let slow = Arc::new(AtomicBool::new(false));
    let starts: Starts = Arc::default();
    let c = SimCluster::new("prod", PlatformOptions::fast());
    let mut nodes = Vec::new();
    for n in ["n1", "n2"] {
        let clock = clock.clone();
        nodes.push(manual(&c, n, apps(n, &slow, &starts), move |b| b.clock(clock)).await);
    }
    let p = nodes[0].platform.clone();
    wait_until("all placed", Duration::from_secs(20), || {
        nodes.iter().map(Manual::runs).sum::<usize>() == APPS
    })
    .await;
    let mut config = rebalance_config();
    config.triggers.on_node_join = false;
    config.triggers.schedule = "0 2 * * *".into();
    config.max_concurrent = 3;
    p.set_migration_policy(&lenient_policy()).await.unwrap();
    p.set_auto_rebalance(&config).await.unwrap();
    let cl = clock.clone();
    nodes.push(manual(&c, "n3", apps("n3", &slow, &starts), move |b| b.clock(cl)).await);
    // Imbalanced (n3 is empty), but nothing happens before 02:00.
    let before = two_am - Duration::from_secs(5);
    tokio::time::sleep(before.duration_since(clock.wall()).unwrap()).await;
    let s = p.rebalance_status().await.unwrap();
    assert_eq!(s.run, 0, "{s:?}");
    assert_eq!(nodes[2].runs(), 0);
    // At 02:00 the schedule fires.
    let done = wait_status(&p, "scheduled run", Duration::from_secs(120), |s| {
        s.run == 1 && s.phase == RebalancePhase::Completed
    })
    .await;
    assert_eq!(done.reason, "schedule");
    let started = SystemTime::UNIX_EPOCH + Duration::from_millis(done.last_run_ms);
    assert!(started >= two_am, "{done:?}");
    assert!(nodes[2].runs() >= 3, "n3 got its share");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_controller_failover_in_the_middle_of_a_run_neither_repeats_nor_loses_migrations() {
    init();
    let slow = Arc::new(AtomicBool::new(false));
    let starts: Starts = Arc::default();
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    // n0 hosts no app: it wins the controller election, and crashing it is a pure
    // controller failover (no instance is lost with it).
    c.start_node("n0", vec![]).await.unwrap();
    for n in ["n1", "n2", "n3"] {
        let mut list = apps(n, &slow, &starts);
        list.push(App::singleton("db").unwrap());
        c.start_node(n, list).await.unwrap();
    }
    let p = c.node("n2").platform.clone();
    p.set_migration_policy(&lenient_policy()).await.unwrap();
    p.set_auto_rebalance(&rebalance_config()).await.unwrap();
    wait_until("placed", Duration::from_secs(20), || {
        (0..APPS).all(|i| running(&c, &format!("a{i}")).len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.store(true, Ordering::SeqCst);
    let mut list = apps("n4", &slow, &starts);
    list.push(App::singleton("db").unwrap());
    c.start_node("n4", list).await.unwrap();
    let mid = wait_status(&p, "run under way", Duration::from_secs(60), |s| {
        s.in_progress && s.completed >= 1 && !s.active.is_empty()
    })
    .await;
    let controller = mid.controller.clone().unwrap().to_string();
    assert_eq!(controller, "n0", "the first node holds the controller");
    let reader = c.names().into_iter().find(|n| *n != controller).unwrap();
    let p = c.node(&reader).platform.clone();
    c.crash_node(&controller);
    // While the new controller takes over and the run goes on: one leader at most, no app
    // on more than two nodes (make-before-break), until the run ends.
    let deadline = Instant::now() + Duration::from_secs(180);
    let end = loop {
        assert!(c.leaders("db").len() <= 1, "two db leaders");
        for i in 0..APPS {
            let r = running(&c, &format!("a{i}"));
            assert!(r.len() <= 2, "a{i} on {r:?}");
        }
        let s = p.rebalance_status().await.unwrap();
        if s.controller
            .as_ref()
            .is_some_and(|n| n.as_str() != controller)
            && !s.in_progress
        {
            break s;
        }
        assert!(Instant::now() < deadline, "run never ended: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        end.run, mid.run,
        "the same run was continued, not restarted"
    );
    assert_eq!(
        end.completed + end.failed.len(),
        end.total,
        "every step ended exactly once: {end:?}"
    );
    // Everything runs exactly once on the survivors; db has exactly one leader.
    wait_until("settled", Duration::from_secs(60), || {
        (0..APPS).all(|i| running(&c, &format!("a{i}")).len() == 1)
    })
    .await;
    c.wait_leader("db", Duration::from_secs(20)).await;
    assert!(
        (0..APPS).any(|i| running(&c, &format!("a{i}")) == vec!["n4".to_owned()]),
        "n4 got apps"
    );
    assert!(end.failed.is_empty(), "{end:?}");
    assert_eq!(end.completed, end.total);
    assert_eq!(
        end.total, mid.total,
        "no step was dropped or added: {end:?}"
    );
    // No migration ran twice: after the join each app started exactly once per planned step
    // (on its target) and never anywhere else.
    let starts = starts.lock().unwrap().clone();
    let planned: BTreeMap<String, Vec<String>> = mid
        .migrations
        .iter()
        .map(|m| (m.app.to_string(), vec![m.to.clone().unwrap().to_string()]))
        .collect();
    assert_eq!(starts, planned);
}
