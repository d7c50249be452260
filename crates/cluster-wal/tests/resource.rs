//! `WalResource` on a 2-node Singleton app (in-memory network, log and object store; real
//! SQLite files): the leader writes with its fencing token, a step-down moves leadership and
//! the database to the other node, which has every committed transaction and continues;
//! scheduled snapshots with retention by count and age.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::Epoch;
use cluster_core::RetryPolicy;
use cluster_core::stream::ReplicatedLog;
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::SimCluster;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::{
    Durability, ErrorKind, Retention, WalDb, WalResource, WalRole, WithSqlite, bootstrap, snapshot,
};
use common::{assert_integrity, assert_same_pages};

async fn count(db: &WalDb) -> i64 {
    db.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
        .await
        .unwrap_or(-1)
}

async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn insert(db: &WalDb, token: Epoch, id: i64) -> cluster_wal::Result<()> {
    db.write(token, move |c| {
        c.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(300))", [id])
            .map(|_| ())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_singleton_fails_over_with_all_committed_data_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let mut cluster = SimCluster::new("walp", PlatformOptions::fast());
    let mut nodes: BTreeMap<String, (App, WalDb, Arc<WalResource>)> = BTreeMap::new();
    for n in ["n1", "n2"] {
        let app = App::singleton("db").unwrap();
        let (wal, db) = WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .snapshot_interval(Duration::from_millis(300))
            .retention(2, Some(Duration::from_secs(600)))
            .durability(Durability::CommitWait)
            .start(Arc::new(log.clone()), Arc::new(store.clone()))
            .await
            .unwrap();
        let check = app.clone();
        db.set_epoch_check(move |e| check.check_epoch(e));
        app.add_resource(wal.clone(), RetryPolicy::default());
        cluster.start_node(n, vec![app.clone()]).await.unwrap();
        nodes.insert(n.to_owned(), (app, db, wal));
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    let second = if first == "n1" { "n2" } else { "n1" }.to_owned();
    let (app1, db1, _) = nodes[&first].clone();
    let db2 = nodes[&second].1.clone();
    let token = app1.fencing_token().unwrap();
    assert_eq!(
        db1.epoch(),
        Some(token),
        "the resource leads under the app's epoch"
    );
    assert_eq!(db1.role(), WalRole::Leader(token));
    assert_eq!(db2.role(), WalRole::Standby);
    db1.write(token, |c| {
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    })
    .await
    .unwrap();
    for i in 0..50 {
        insert(&db1, token, i).await.unwrap();
    }
    // Writes without the current token are refused, on the standby and on the leader.
    let err = insert(&db2, token, 1000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    let err = insert(&db1, Epoch(token.get() - 1), 1001)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    // The standby follows and serves reads.
    eventually("standby has 50 rows", Duration::from_secs(10), async || {
        count(&db2).await == 50
    })
    .await;
    // Scheduled snapshots run, retention keeps at most 2 and the log is trimmed behind them.
    eventually(
        "two scheduled snapshots",
        Duration::from_secs(10),
        async || db1.snapshots().await.unwrap().len() == 2 && log.state_now().first_seq > 1,
    )
    .await;
    for i in 50..60 {
        insert(&db1, token, i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let snaps = db2.snapshots().await.unwrap();
    assert!(snaps.len() <= 2, "retention by count: {snaps:?}");
    let oldest = snaps.iter().map(|m| m.stream_seq).min().unwrap();
    assert!(
        log.state_now().first_seq <= oldest + 1,
        "never trimmed past a kept snapshot"
    );

    // Step down: the other node becomes leader with every committed transaction.
    app1.step_down().await.unwrap();
    let (leader2, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    assert_eq!(leader2, second);
    let app2 = nodes[&second].0.clone();
    let token2 = app2.fencing_token().unwrap();
    assert!(token2 > token);
    assert_eq!(db2.epoch(), Some(token2));
    assert_eq!(
        count(&db2).await,
        60,
        "all committed data on the new leader"
    );
    for i in 60..90 {
        insert(&db2, token2, i).await.unwrap();
    }
    // The old leader is a standby now: its old token is refused and it follows the new leader.
    assert_eq!(db1.role(), WalRole::Standby);
    let err = insert(&db1, token, 2000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    eventually(
        "old leader follows the new one",
        Duration::from_secs(10),
        async || count(&db1).await == 90,
    )
    .await;
    let st = db1.status().standby.unwrap();
    assert_eq!(st.errors, 0, "{:?}", st.last_error);
    assert_eq!(st.restores, 0, "resumed from its own shipped position");

    // Clean stop, then both replicas are page-identical.
    for n in ["n1", "n2"] {
        cluster.stop_node(n).await.unwrap();
    }
    for (_, (_, _, wal)) in nodes {
        wal.shutdown().await;
    }
    assert_same_pages(&dir.path().join("n1.db"), &dir.path().join("n2.db"));
    assert_integrity(&dir.path().join("n1.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_deletes_old_snapshots_but_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let leader = bootstrap(
        dir.path().join("l.db"),
        "n1",
        1,
        Arc::new(log.clone()),
        Arc::new(store.clone()),
    )
    .await
    .unwrap();
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        })
        .await
        .unwrap();
    let hour = 3_600_000_000u64;
    // Count 3 also drops the bootstrap snapshot (txid 0) once three newer ones exist.
    let keep_three = Retention {
        count: 3,
        max_age: None,
    };
    for age_hours in [3u64, 2, 1] {
        leader
            .write(Durability::CommitWait, |c| {
                c.execute_batch("INSERT INTO t DEFAULT VALUES")
            })
            .await
            .unwrap();
        let mut snap = leader.snapshot().await.unwrap();
        snap.meta.created_us -= age_hours * hour;
        snapshot::publish_with_retention(&store, &log, &snap, keep_three)
            .await
            .unwrap();
    }
    assert_eq!(snapshot::list(&store).await.unwrap().len(), 3);
    // A fresh snapshot, then retention of 10 snapshots younger than 90 minutes: the two older
    // ones go, the 1 h old one and the fresh one stay.
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("INSERT INTO t DEFAULT VALUES")
        })
        .await
        .unwrap();
    let fresh = leader.snapshot().await.unwrap();
    let kept = snapshot::publish_with_retention(
        &store,
        &log,
        &fresh,
        Retention {
            count: 10,
            max_age: Some(Duration::from_secs(90 * 60)),
        },
    )
    .await
    .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(snapshot::list(&store).await.unwrap().len(), 2);
    assert_eq!(
        log.state().await.unwrap().first_seq,
        kept.iter().map(|m| m.stream_seq).min().unwrap() + 1,
        "log trimmed behind the oldest kept snapshot"
    );
    // Everything too old, count 1: only the newest remains.
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("INSERT INTO t DEFAULT VALUES")
        })
        .await
        .unwrap();
    let mut old = leader.snapshot().await.unwrap();
    old.meta.created_us -= 10 * hour;
    let kept = snapshot::publish_with_retention(
        &store,
        &log,
        &old,
        Retention {
            count: 1,
            max_age: Some(Duration::from_secs(1)),
        },
    )
    .await
    .unwrap();
    assert_eq!(kept.len(), 1, "the newest snapshot is always kept");
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_ready_to_take_over_only_while_it_keeps_up_with_the_log() {
    use cluster_core::ActiveResource;
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let start = |n: &str| {
        WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .ready_max_lag(0)
            .start(Arc::new(log.clone()), Arc::new(store.clone()))
    };
    let (wal1, db1) = start("n1").await.unwrap();
    let (wal2, _db2) = start("n2").await.unwrap();
    wal1.activate(Epoch(1)).await.unwrap();
    assert!(wal1.standby_ready(), "a leader is ready");
    db1.write(Epoch(1), |c| {
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    })
    .await
    .unwrap();
    for i in 0..5 {
        insert(&db1, Epoch(1), i).await.unwrap();
    }
    eventually(
        "the caught-up standby is ready",
        Duration::from_secs(10),
        async || wal2.standby_ready(),
    )
    .await;
    // A reader holding the standby's write lock stalls its apply: it falls behind and is no
    // longer ready (its lag or its busy error says so).
    let blocker = rusqlite::Connection::open(dir.path().join("n2.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 5..50 {
        insert(&db1, Epoch(1), i).await.unwrap();
    }
    eventually(
        "the stalled standby is not ready",
        Duration::from_secs(10),
        async || !wal2.standby_ready(),
    )
    .await;
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    eventually(
        "ready again once caught up",
        Duration::from_secs(20),
        async || wal2.standby_ready(),
    )
    .await;
    wal1.shutdown().await;
    wal2.shutdown().await;
}
