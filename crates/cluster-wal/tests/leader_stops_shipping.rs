//! A leader whose capture fails (here: a `-wal` file from another database moved next to its
//! database) stops shipping; it must not keep the term, or an external writer would go on
//! committing rows that can never reach a standby. The node resigns (through
//! `ActiveResource::leadership_blocked` and the candidacy watcher), the other node promotes with
//! every shipped row, nothing of the foreign file, and the old leader follows again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::RetryPolicy;
use cluster_runtime::{App, PlatformOptions};
use cluster_testkit::scenario::SimCluster;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::{WalDb, WalRole, WithSqlite};

async fn ids(db: &WalDb) -> Vec<i64> {
    db.read(|c| {
        let mut s = c.prepare("SELECT id FROM t ORDER BY id")?;
        s.query_map([], |r| r.get(0))?.collect()
    })
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_shipping_resigns_and_the_standby_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let mut cluster = SimCluster::new("walstops", PlatformOptions::fast());
    let mut dbs = Vec::new();
    for n in ["n1", "n2"] {
        let (wal, db) = WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .catch_up_timeout(Duration::from_secs(2))
            .start(Arc::new(log.clone()), Arc::new(store.clone()))
            .await
            .unwrap();
        let app = App::singleton("db").unwrap();
        let check = app.clone();
        db.set_epoch_check(move |e| check.check_epoch(e));
        app.add_resource(wal, RetryPolicy::default());
        cluster.start_node(n, vec![app]).await.unwrap();
        dbs.push((n, db));
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    let (leader, other) = if first == "n1" {
        (dbs[0].1.clone(), dbs[1].1.clone())
    } else {
        (dbs[1].1.clone(), dbs[0].1.clone())
    };
    let token = leader.epoch().unwrap();
    leader
        .write(token, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        })
        .await
        .unwrap();
    for i in 0..10i64 {
        leader
            .write(token, move |c| {
                c.execute("INSERT INTO t(id) VALUES (?1)", [i]).map(|_| ())
            })
            .await
            .unwrap();
    }

    // Another database's WAL moved next to the leader's database.
    let other_db = dir.path().join("other.db");
    let c = rusqlite::Connection::open(&other_db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE other(y); INSERT INTO other VALUES (randomblob(5000));",
    )
    .unwrap();
    let wal = PathBuf::from(format!("{}-wal", leader.path().display()));
    let tmp = dir.path().join("incoming-wal");
    std::fs::copy(format!("{}-wal", other_db.display()), &tmp).unwrap();
    std::fs::rename(&tmp, &wal).unwrap();
    let err = leader
        .write(token, |c| c.execute_batch("INSERT INTO t(id) VALUES (100)"))
        .await
        .expect_err("a commit captured from a foreign WAL");
    assert!(
        err.to_string().contains("is not this database's WAL"),
        "{err}"
    );

    // The stopped leader resigns; the other node leads with every shipped row.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !matches!(other.role(), WalRole::Leader(_)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby does not take over from a leader that stopped shipping: {:?}",
            cluster.leaders("db")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!matches!(leader.role(), WalRole::Leader(_)));
    assert_eq!(ids(&other).await, (0..10).collect::<Vec<_>>());
    let token = other.epoch().unwrap();
    other
        .write(token, |c| c.execute_batch("INSERT INTO t(id) VALUES (11)"))
        .await
        .unwrap();
    drop(c);
}
