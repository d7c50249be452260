//! Ring ownership over real NATS with in-process nodes (the `cluster` daemon cannot observe a
//! Ring app's hooks): join and leave move partitions with `on_release` on the old owner
//! completing before `on_own` on the new one, never two owners, and a crashed owner's
//! partitions are reassigned after its membership lease expired. Migration locks and drains
//! over NATS: a concurrent move of a moving app gets `LockHeld`; a drain without force keeps an
//! instance that cannot move running and times out naming it, a forced drain stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::placement::{AppPlacementExt, planner};
use cluster::{App, Mode, Role};
use cluster_runtime::{DrainOptions, MoveRequest};
use cluster_testkit::nats_server::NatsServer;
use common::{NatsNode, connect_options, options, wait_until};

type Owners = Arc<Mutex<BTreeMap<u32, String>>>;
type Log = Arc<Mutex<Vec<(String, &'static str, Vec<u32>)>>>;

fn ring_app(node: &str, owners: &Owners, log: &Log) -> App {
    let app = App::new("cache", Mode::Ring { partitions: 12 }).unwrap();
    let (l, o, me) = (log.clone(), owners.clone(), node.to_owned());
    app.on_own(move |_, parts| {
        let (l, o, me) = (l.clone(), o.clone(), me.clone());
        async move {
            let mut owners = o.lock().unwrap();
            for p in &parts {
                assert!(
                    !owners.contains_key(p),
                    "partition {p} owned by {:?} when {me} takes it",
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
    app
}

async fn start(url: &str, node: &str, app: App) -> NatsNode {
    let urls = vec![url.to_owned()];
    let conn = cluster::nats::connect(connect_options(&urls, node))
        .await
        .unwrap();
    let p = cluster::nats::platform(&conn, "ringnats", node, 1)
        .unwrap()
        .options(options(1))
        .planner(planner())
        .build()
        .unwrap();
    p.register(&app).unwrap();
    let runner = p.clone();
    let run = tokio::spawn(async move { runner.run().await });
    p.wait_started().await.unwrap();
    NatsNode {
        platform: p,
        conn,
        apps: BTreeMap::from([("cache".to_owned(), app)]),
        run: Some(run),
    }
}

fn count(owners: &Owners, node: &str) -> usize {
    owners
        .lock()
        .unwrap()
        .values()
        .filter(|v| *v == node)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_join_leave_and_crash_over_nats_release_before_own() {
    let server = NatsServer::start();
    let url = server.url();
    let owners: Owners = Arc::default();
    let log: Log = Arc::default();
    let mut nodes = BTreeMap::new();
    for n in ["n1", "n2", "n3"] {
        nodes.insert(n, start(&url, n, ring_app(n, &owners, &log)).await);
    }
    wait_until("12 partitions, 4 each", Duration::from_secs(30), || {
        owners.lock().unwrap().len() == 12
            && ["n1", "n2", "n3"].iter().all(|n| count(&owners, n) == 4)
    })
    .await;
    // Every node answers the same ring view.
    let members = nodes["n1"].app("cache").ring().unwrap().members();
    for n in ["n2", "n3"] {
        assert_eq!(nodes[n].app("cache").ring().unwrap().members(), members);
    }

    // Join: exactly 3 partitions (P/(N+1)) move to n4, each released first.
    let before = log.lock().unwrap().len();
    nodes.insert("n4", start(&url, "n4", ring_app("n4", &owners, &log)).await);
    wait_until("n4 owns 3", Duration::from_secs(30), || {
        count(&owners, "n4") == 3
    })
    .await;
    let events: Vec<_> = log.lock().unwrap()[before..].to_vec();
    let owned: usize = events
        .iter()
        .filter(|(n, k, _)| n == "n4" && *k == "own")
        .map(|(_, _, p)| p.len())
        .sum();
    assert_eq!(owned, 3, "{events:?}");
    for (i, (node, kind, parts)) in events.iter().enumerate() {
        if *kind != "own" {
            continue;
        }
        for p in parts {
            let released = events[..i]
                .iter()
                .any(|(n, k, ps)| n != node && *k == "release" && ps.contains(p));
            assert!(
                released,
                "partition {p} owned by {node} before its release: {events:?}"
            );
        }
    }

    // Graceful leave of n1: its partitions are released, then owned by the others.
    let before = log.lock().unwrap().len();
    nodes.remove("n1").unwrap().stop().await.unwrap();
    wait_until("12 owned by n2..n4", Duration::from_secs(30), || {
        owners.lock().unwrap().len() == 12
            && ["n2", "n3", "n4"].iter().all(|n| count(&owners, n) == 4)
    })
    .await;
    let events: Vec<_> = log.lock().unwrap()[before..].to_vec();
    let released_by_n1: Vec<u32> = events
        .iter()
        .filter(|(n, k, _)| n == "n1" && *k == "release")
        .flat_map(|(_, _, p)| p.clone())
        .collect();
    assert!(!released_by_n1.is_empty(), "{events:?}");
    for p in &released_by_n1 {
        let rel = events
            .iter()
            .position(|(n, k, ps)| n == "n1" && *k == "release" && ps.contains(p))
            .unwrap();
        let own = events
            .iter()
            .position(|(n, k, ps)| n != "n1" && *k == "own" && ps.contains(p))
            .unwrap_or_else(|| panic!("partition {p} never owned again: {events:?}"));
        assert!(
            rel < own,
            "partition {p}: owned before released: {events:?}"
        );
    }

    // Crash of n2 (no on_release): its partitions are owned again after its membership TTL.
    let mut crashed = nodes.remove("n2").unwrap();
    crashed.run.take().unwrap().abort();
    crashed.platform.abort();
    let _ = crashed.conn.close().await;
    drop(crashed);
    owners.lock().unwrap().retain(|_, v| v != "n2");
    wait_until("12 owned by n3, n4", Duration::from_secs(30), || {
        owners.lock().unwrap().len() == 12 && ["n3", "n4"].iter().all(|n| count(&owners, n) == 6)
    })
    .await;
    for (_, n) in nodes {
        n.stop().await.unwrap();
    }
}

async fn start_with(url: &str, node: &str, apps: Vec<App>) -> NatsNode {
    let urls = vec![url.to_owned()];
    let conn = cluster::nats::connect(connect_options(&urls, node))
        .await
        .unwrap();
    let p = cluster::nats::platform(&conn, "locknats", node, 1)
        .unwrap()
        .options(options(1))
        .planner(planner())
        .build()
        .unwrap();
    common::run_node(conn, p, apps).await.unwrap()
}

fn lock_apps() -> Vec<App> {
    let db = App::singleton("db").unwrap();
    db.on_migration_start(|_, _| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    });
    let pinned = App::singleton("pinned").unwrap();
    pinned.on_nodes(["n1"]).unwrap();
    vec![db, pinned]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_lock_and_drain_force_over_nats() {
    let server = NatsServer::start();
    let url = server.url();
    let mut nodes = BTreeMap::new();
    for n in ["n1", "n2", "n3"] {
        nodes.insert(n, start_with(&url, n, lock_apps()).await);
    }
    let all = |nodes: &BTreeMap<&str, NatsNode>, app: &str| -> Vec<String> {
        nodes
            .iter()
            .filter(|(_, n)| n.app(app).is_running())
            .map(|(k, _)| (*k).to_owned())
            .collect()
    };
    let leader = |nodes: &BTreeMap<&str, NatsNode>, app: &str| -> Vec<String> {
        nodes
            .iter()
            .filter(|(_, n)| n.app(app).is_leader())
            .map(|(k, _)| (*k).to_owned())
            .collect()
    };
    wait_until(
        "db standbys and pinned on n1",
        Duration::from_secs(30),
        || {
            all(&nodes, "db").len() == 3
                && leader(&nodes, "db").len() == 1
                && leader(&nodes, "pinned") == vec!["n1"]
                && nodes.values().all(|n| n.app("db").role() != Role::Stopped)
        },
    )
    .await;
    let from = leader(&nodes, "db")[0].clone();
    // Every node's membership view shows `from` leading db (a move checks it there).
    let mut views = Vec::new();
    for n in nodes.values() {
        views.push(n.platform.members_watch().await.unwrap());
    }
    wait_until(
        "every view shows the db leader",
        Duration::from_secs(10),
        || {
            views.iter().all(|v| {
                v.borrow()
                    .get(&cluster::NodeId::new(&from).unwrap())
                    .is_some_and(|m| {
                        m.apps
                            .iter()
                            .any(|a| a.name.as_str() == "db" && a.role == Role::Leader)
                    })
            })
        },
    )
    .await;
    let others: Vec<String> = ["n1", "n2", "n3"]
        .iter()
        .map(|s| (*s).to_owned())
        .filter(|n| *n != from)
        .collect();
    // Two concurrent moves of db: the second is refused with LockHeld.
    let p1 = nodes[others[0].as_str()].platform.clone();
    let req = |to: &str| MoveRequest {
        app: "db".into(),
        from: from.clone(),
        to: Some(to.into()),
        timeout: Duration::from_secs(30),
    };
    let first = tokio::spawn({
        let r = req(&others[0]);
        async move { p1.move_app(r).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = nodes[others[1].as_str()]
        .platform
        .move_app(req(&others[1]))
        .await
        .unwrap_err();
    assert!(matches!(err, cluster::Error::LockHeld { .. }), "{err}");
    let moved = first.await.unwrap().unwrap();
    assert_eq!(moved.as_str(), others[0]);
    assert_eq!(leader(&nodes, "db"), vec![others[0].clone()]);

    // Drain n1 without force: pinned cannot run elsewhere and keeps running.
    let operator = nodes["n2"].platform.clone();
    let err = operator
        .drain_node(
            "n1",
            DrainOptions {
                timeout: Duration::from_secs(8),
                ..DrainOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, cluster::Error::Timeout(_)), "{msg}");
    assert!(msg.contains("pinned") && msg.contains("blocked"), "{msg}");
    assert_eq!(leader(&nodes, "pinned"), vec!["n1"]);
    assert!(!all(&nodes, "db").contains(&"n1".to_owned()));
    // Forced: pinned is stopped, the node ends up empty.
    let done = operator
        .drain_node(
            "n1",
            DrainOptions {
                timeout: Duration::from_secs(30),
                force: true,
                ..DrainOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    assert!(done.remaining.is_empty());
    assert!(all(&nodes, "pinned").is_empty());
    let record = operator.assignment().await.unwrap().unwrap();
    assert!(record.pending.keys().any(|a| a.as_str() == "pinned"));
    for (_, n) in nodes {
        n.stop().await.unwrap();
    }
}
