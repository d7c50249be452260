//! Enforced placement on in-memory nodes (paused time): the spec's 5-node example, Replicas
//! counts and rescheduling after a crash, moves, drain, cordon across controller failover,
//! label-driven migration, pending apps, and Ring ownership hand-over order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::placement::{AppPlacementExt, planner};
use cluster::{App, Labels, Mode, PlatformOptions, Role};
use cluster_runtime::{DrainOptions, MoveRequest};
use cluster_testkit::scenario::{SimCluster, wait_until};

/// (node, "own" | "release", partitions)
type OwnershipEvent = (String, &'static str, Vec<u32>);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn cluster() -> SimCluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner())
}

/// Nodes running `app`, sorted.
fn running(c: &SimCluster, app: &str) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get(app).is_some_and(|a| a.is_running()))
        .collect()
}

fn spec_apps() -> Vec<App> {
    let convex = App::singleton("convex").unwrap();
    convex.on_label("tier", "storage").unwrap();
    let cache = App::spread("cache").unwrap();
    cache.on_label("tier", "compute").unwrap();
    let api = App::spread("api").unwrap();
    let worker = App::new("worker", Mode::Replicas { n: 3 }).unwrap();
    worker.away_from_app("convex").unwrap();
    let scheduler = App::singleton("scheduler").unwrap();
    scheduler.on_label("tier", "controller").unwrap();
    vec![convex, cache, api, worker, scheduler]
}

#[tokio::test(start_paused = true)]
async fn the_five_node_example_of_the_spec_is_enforced() {
    let mut c = cluster();
    let nodes = [
        ("node-1", "us-east-1a", "compute"),
        ("node-2", "us-east-1a", "compute"),
        ("node-3", "us-east-1b", "compute"),
        ("node-4", "us-east-1b", "storage"),
        ("node-5", "us-east-1c", "controller"),
    ];
    for (n, zone, tier) in nodes {
        c.start_node_with(n, spec_apps(), labels(&[("zone", zone), ("tier", tier)]))
            .await
            .unwrap();
    }
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("convex", vec!["node-4"]),
        ("cache", vec!["node-1", "node-2", "node-3"]),
        (
            "api",
            vec!["node-1", "node-2", "node-3", "node-4", "node-5"],
        ),
        ("worker", vec!["node-1", "node-2", "node-3"]),
        ("scheduler", vec!["node-5"]),
    ]);
    wait_until("placement converged", Duration::from_secs(20), || {
        expected
            .iter()
            .all(|(app, nodes)| running(&c, app) == *nodes)
    })
    .await;
    let (convex_leader, _) = c.wait_leader("convex", Duration::from_secs(10)).await;
    assert_eq!(convex_leader, "node-4");
    let (sched_leader, _) = c.wait_leader("scheduler", Duration::from_secs(10)).await;
    assert_eq!(sched_leader, "node-5");
    // Stable: nothing moves afterwards.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (app, nodes) in &expected {
        assert_eq!(running(&c, app), *nodes, "{app} moved without a reason");
    }
}

#[tokio::test(start_paused = true)]
async fn replicas_run_exactly_n_and_a_crashed_node_is_replaced() {
    let mut c = cluster();
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        let w = App::new("worker", Mode::Replicas { n: 3 }).unwrap();
        c.start_node(n, vec![w]).await.unwrap();
    }
    wait_until("three replicas", Duration::from_secs(20), || {
        running(&c, "worker").len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(running(&c, "worker").len(), 3, "exactly 3, stable");
    let victim = running(&c, "worker")[0].clone();
    let crashed = tokio::time::Instant::now();
    c.crash_node(&victim);
    wait_until("replaced after the crash", Duration::from_secs(20), || {
        let r = running(&c, "worker");
        r.len() == 3 && !r.contains(&victim)
    })
    .await;
    let took = crashed.elapsed();
    let ttl = PlatformOptions::fast().member_ttl;
    assert!(
        took <= ttl + Duration::from_secs(2),
        "rescheduled after {took:?} (member TTL {ttl:?})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_singleton_moves_to_the_named_node_with_migration_hooks() {
    let mut c = cluster();
    let log = Arc::new(Mutex::new(Vec::new()));
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        let l = log.clone();
        db.on_migration_start(move |_, (from, to)| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push(format!("start {from}->{to}"));
                Ok(())
            }
        });
        let l = log.clone();
        db.on_migration_complete(move |_, (from, to)| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push(format!("complete {from}->{to}"));
                Ok(())
            }
        });
        c.start_node(n, vec![db]).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    wait_until("all standbys running", Duration::from_secs(20), || {
        running(&c, "db").len() == 3
    })
    .await;
    let target = c.names().into_iter().find(|n| *n != leader).unwrap();
    let moved = c
        .node(&target)
        .platform
        .move_app(MoveRequest {
            app: "db".into(),
            from: leader.clone(),
            to: Some(target.clone()),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(moved.as_str(), target);
    assert_eq!(c.leader("db"), Some(target.clone()));
    wait_until("hooks ran", Duration::from_secs(5), || {
        log.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            format!("start {leader}->{target}"),
            format!("complete {leader}->{target}")
        ]
    );
    // Bad requests change nothing.
    let p = &c.node(&target).platform;
    let err = p
        .move_app(MoveRequest {
            app: "nope".into(),
            from: target.clone(),
            to: None,
            timeout: Duration::from_secs(1),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::AppNotFound(_)), "{err}");
    let err = p
        .move_app(MoveRequest {
            app: "db".into(),
            from: "ghost".into(),
            to: None,
            timeout: Duration::from_secs(1),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::NodeNotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn drain_moves_everything_off_with_progress_and_cordon_survives_controller_failover() {
    let mut c = cluster();
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        let w = App::new("worker", Mode::Replicas { n: 2 }).unwrap();
        let api = App::spread("api").unwrap();
        c.start_node(n, vec![db, w, api]).await.unwrap();
    }
    let (leader, _) = c.wait_leader("db", Duration::from_secs(20)).await;
    wait_until("workers placed", Duration::from_secs(20), || {
        running(&c, "worker").len() == 2
    })
    .await;
    let drained = leader.clone();
    let operator = c.names().into_iter().find(|n| *n != drained).unwrap();
    let mut seen = Vec::new();
    let done = c
        .node(&operator)
        .platform
        .drain_node(
            &drained,
            DrainOptions {
                timeout: Duration::from_secs(60),
                force: false,
                ..DrainOptions::default()
            },
            |p| seen.push(p.remaining.len()),
        )
        .await
        .unwrap();
    assert!(done.remaining.is_empty());
    assert!(
        seen.len() >= 2 && seen[0] > 0 && *seen.last().unwrap() == 0,
        "progress {seen:?}"
    );
    assert!(!running(&c, "api").contains(&drained));
    assert!(!running(&c, "worker").contains(&drained));
    assert_eq!(running(&c, "worker").len(), 2);
    let (new_leader, _) = c.wait_leader("db", Duration::from_secs(10)).await;
    assert_ne!(new_leader, drained);
    assert!(
        c.node(&operator)
            .platform
            .is_cordoned(&drained)
            .await
            .unwrap()
    );
    // Crash whichever node leads the controller... simply crash a non-drained node and check
    // the cordon still holds for the survivors' controller.
    let other = c
        .names()
        .into_iter()
        .find(|n| *n != drained && *n != operator)
        .unwrap();
    c.crash_node(&other);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !running(&c, "api").contains(&drained),
        "cordon must survive controller failover"
    );
    assert!(
        c.node(&operator)
            .platform
            .is_cordoned(&drained)
            .await
            .unwrap()
    );
    // Uncordon: the node gets instances again.
    c.node(&operator)
        .platform
        .uncordon_node(&drained)
        .await
        .unwrap();
    wait_until(
        "api back on the uncordoned node",
        Duration::from_secs(20),
        || running(&c, "api").contains(&drained),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_label_change_migrates_an_on_label_app_and_pending_apps_get_placed_later() {
    let mut c = cluster();
    let invalid = Arc::new(Mutex::new(Vec::new()));
    let mk = |inv: &Arc<Mutex<Vec<String>>>| {
        let s = App::singleton("scheduler").unwrap();
        s.on_label("role", "controller").unwrap();
        let inv = inv.clone();
        s.on_placement_invalid(move |_, reason| {
            let inv = inv.clone();
            async move {
                inv.lock().unwrap().push(reason);
                Ok(())
            }
        });
        s
    };
    c.start_node_with("n1", vec![mk(&invalid)], labels(&[("role", "compute")]))
        .await
        .unwrap();
    c.start_node_with("n2", vec![mk(&invalid)], labels(&[("role", "compute")]))
        .await
        .unwrap();
    wait_until("pending reported", Duration::from_secs(20), || {
        !invalid.lock().unwrap().is_empty()
    })
    .await;
    assert!(
        running(&c, "scheduler").is_empty(),
        "nothing qualifies: pending"
    );
    assert!(
        invalid.lock().unwrap()[0].contains("role=controller"),
        "{:?}",
        invalid.lock().unwrap()
    );
    // n1 qualifies later: the pending app is placed there.
    c.node("n2")
        .platform
        .update_node_labels("n1", &labels(&[("role", "controller")]))
        .await
        .unwrap();
    let (leader, _) = c.wait_leader("scheduler", Duration::from_secs(20)).await;
    assert_eq!(leader, "n1");
    // Move the label: the app migrates to n2.
    c.node("n1")
        .platform
        .update_node_labels("n2", &labels(&[("role", "controller")]))
        .await
        .unwrap();
    c.node("n1")
        .platform
        .update_node_labels("n1", &labels(&[("role", "compute")]))
        .await
        .unwrap();
    wait_until("migrated to n2", Duration::from_secs(20), || {
        c.leader("scheduler") == Some("n2".into())
    })
    .await;
    assert_eq!(running(&c, "scheduler"), vec!["n2"]);
    assert_eq!(c.node("n1").app("scheduler").role(), Role::Stopped);
}

#[tokio::test(start_paused = true)]
async fn ring_partitions_move_release_before_own_and_never_have_two_owners() {
    let mut c = cluster();
    let log: Arc<Mutex<Vec<OwnershipEvent>>> = Arc::default();
    let owners: Arc<Mutex<BTreeMap<u32, String>>> = Arc::default();
    let mk = |node: &str| {
        let app = App::new("cache", Mode::Ring { partitions: 12 }).unwrap();
        let (l, o, me) = (log.clone(), owners.clone(), node.to_owned());
        app.on_own(move |_, parts| {
            let (l, o, me) = (l.clone(), o.clone(), me.clone());
            async move {
                let mut owners = o.lock().unwrap();
                for p in &parts {
                    assert!(
                        !owners.contains_key(p),
                        "partition {p} already owned by {:?}",
                        owners[p]
                    );
                    owners.insert(*p, me.clone());
                }
                l.lock().unwrap().push((me, "own", parts));
                Ok(())
            }
        });
        let (l, o, me) = (log.clone(), owners.clone(), node.to_owned());
        app.on_release(move |_, parts| {
            let (l, o, me) = (l.clone(), o.clone(), me.clone());
            async move {
                let mut owners = o.lock().unwrap();
                for p in &parts {
                    assert_eq!(owners.remove(p).as_deref(), Some(me.as_str()));
                }
                l.lock().unwrap().push((me, "release", parts));
                Ok(())
            }
        });
        app.handle("who", |req| async move {
            Ok(bytes::Bytes::from(req.app.node_id().unwrap().to_string()))
        })
        .unwrap();
        app
    };
    for n in ["n1", "n2", "n3"] {
        c.start_node(n, vec![mk(n)]).await.unwrap();
    }
    wait_until(
        "all 12 partitions owned, 4 each",
        Duration::from_secs(20),
        || {
            let o = owners.lock().unwrap();
            o.len() == 12
                && ["n1", "n2", "n3"]
                    .iter()
                    .all(|n| o.values().filter(|v| v == n).count() == 4)
        },
    )
    .await;
    // Views agree on every node and ForKey routes to the owner.
    let view = c.node("n1").app("cache").ring().unwrap();
    for n in ["n2", "n3"] {
        assert_eq!(
            c.node(n).app("cache").ring().unwrap().members(),
            view.members()
        );
    }
    for key in ["user:1", "user:2", "order:9"] {
        let owner = view.node_for(key).unwrap();
        let who = c
            .node("n2")
            .platform
            .api("cache")
            .unwrap()
            .call(cluster::Routing::ForKey(key.into()), "who", "")
            .await
            .unwrap();
        assert_eq!(who, owner.as_str().as_bytes());
    }
    // A join: 3 partitions move to n4 (12/4), each released before it is owned.
    c.start_node("n4", vec![mk("n4")]).await.unwrap();
    wait_until("n4 owns 3", Duration::from_secs(20), || {
        owners
            .lock()
            .unwrap()
            .values()
            .filter(|v| *v == "n4")
            .count()
            == 3
    })
    .await;
    let moved: usize = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, k, _)| n == "n4" && *k == "own")
        .map(|(_, _, p)| p.len())
        .sum();
    assert_eq!(moved, 3, "a join moves exactly P/(N+1) partitions");
    // A crash: the dead node's partitions are owned again by survivors after its lease expired.
    c.crash_node("n2");
    // A crashed process owns nothing any more (it never runs on_release).
    owners.lock().unwrap().retain(|_, v| v != "n2");
    wait_until("all 12 owned by survivors", Duration::from_secs(30), || {
        owners.lock().unwrap().len() == 12
    })
    .await;
    let o = owners.lock().unwrap();
    for n in ["n1", "n3", "n4"] {
        assert_eq!(
            o.values().filter(|v| *v == n).count(),
            4,
            "balanced after the crash: {o:?}"
        );
    }
}
