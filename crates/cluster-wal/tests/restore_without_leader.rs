//! `cluster snapshot restore --on <node>`: restoring a snapshot when no node leads the database
//! (`WalDb::restore_snapshot_without_leader`). Refused while a leader is known and when a leader
//! appears meanwhile (the log's expected sequence is the fence: nothing stored, nothing
//! appended); otherwise every replica restores the snapshot as a new lineage and the next
//! leader starts from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_core::{Error, NodeId, RetryPolicy};
use cluster_runtime::{App, PlatformOptions};
use cluster_testkit::scenario::SimCluster;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::record::{EpochStart, Record};
use cluster_wal::{WalDb, WalResource, WalRole, WithSqlite};
use common::RecordedAudit;

async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ids(db: &WalDb) -> Vec<i64> {
    db.read(|c| {
        let mut s = c.prepare("SELECT id FROM t ORDER BY id")?;
        s.query_map([], |r| r.get(0))?.collect()
    })
    .await
    .unwrap_or_default()
}

fn singleton(wal: &Arc<WalResource>, db: &WalDb) -> App {
    let app = App::singleton("db").unwrap();
    let check = app.clone();
    db.set_epoch_check(move |e| check.check_epoch(e));
    app.add_resource(wal.clone(), RetryPolicy::default());
    app
}

async fn object_names(store: &MemoryObjectStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_restored_without_a_leader_fenced_against_one_that_appears() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let mut cluster = SimCluster::new("walrestore", PlatformOptions::fast());
    let mut dbs = Vec::new();
    for n in ["n1", "n2"] {
        let audit = Arc::new(RecordedAudit::default());
        let (wal, db) = WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .catch_up_timeout(Duration::from_secs(2))
            .audit(audit.clone())
            .start(Arc::new(log.clone()), Arc::new(store.clone()))
            .await
            .unwrap();
        cluster
            .start_node(n, vec![singleton(&wal, &db)])
            .await
            .unwrap();
        dbs.push((n, wal, db, audit));
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    let leader_db = dbs.iter().find(|d| d.0 == first).unwrap().2.clone();
    let token = leader_db.epoch().unwrap();
    leader_db
        .write(token, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        })
        .await
        .unwrap();
    let insert = async |range: std::ops::Range<i64>| {
        for i in range {
            leader_db
                .write(token, move |c| {
                    c.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(300))", [i])
                        .map(|_| ())
                })
                .await
                .unwrap();
        }
    };
    insert(0..10).await;
    let snap = leader_db.snapshot_now(token).await.unwrap();
    insert(10..20).await;
    for (_, _, db, _) in &dbs {
        eventually("20 rows everywhere", Duration::from_secs(10), async || {
            ids(db).await.len() == 20
        })
        .await;
    }
    // No node can lead: both stop (their replicas keep following the log).
    for n in ["n1", "n2"] {
        cluster.stop_node(n).await.unwrap();
    }
    let (_, _, db2, audit2) = dbs.iter().find(|d| d.0 == "n2").unwrap().clone();
    assert!(matches!(db2.role(), WalRole::Standby));
    let objects = object_names(&store).await;
    let tail = log.state_now().last_seq;

    // 1. A known leader: refused with its name, nothing done.
    let refused = db2
        .restore_snapshot_without_leader(&snap.id(), || {
            Err(Error::NotLeader {
                epoch: None,
                leader: Some(NodeId::new("n9").unwrap()),
            })
        })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("n9"), "{refused}");
    assert_eq!(log.state_now().last_seq, tail);
    assert_eq!(object_names(&store).await, objects);

    // 2. A leader appears right after the check and appends its EpochStart (as every new
    //    leader does before its first write): the restore fails, its copy is deleted, the
    //    leader's entry is the log's last.
    let pos = db2.status().standby.unwrap().position;
    let appearing = Record::EpochStart(EpochStart {
        lineage: pos.lineage.unwrap(),
        epoch: pos.epoch + 1,
        base_txid: pos.txid,
        base_checksum: pos.checksum,
        ts_us: 1,
        node_id: "n9".into(),
    });
    let log2 = log.clone();
    let fenced = db2
        .restore_snapshot_without_leader(&snap.id(), move || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(log2.append(
                    appearing.headers(),
                    appearing.encode(),
                    Some(tail),
                ))
            })
            .map(|_| ())
        })
        .await
        .unwrap_err();
    assert!(fenced.to_string().contains("moved"), "{fenced}");
    assert_eq!(
        log.state_now().last_seq,
        tail + 1,
        "only the leader's entry"
    );
    assert_eq!(object_names(&store).await, objects, "the copy is deleted");
    assert_eq!(audit2.all("restore.failed").len(), 2);
    for (_, _, db, _) in &dbs {
        eventually(
            "the leader's EpochStart applied",
            Duration::from_secs(10),
            async || db.status().standby.unwrap().position.stream_seq == tail + 1,
        )
        .await;
        assert_eq!(ids(db).await.len(), 20, "nothing restored");
    }

    // 3. No leader: restored as a new lineage; every replica restores it.
    let report = db2
        .restore_snapshot_without_leader(&snap.id(), || Ok(()))
        .await
        .unwrap();
    assert_eq!(report.epoch_start_seq, tail + 2);
    assert_eq!(report.from_txid, snap.txid);
    let started = audit2.all("restore.started");
    assert_eq!(started.last().unwrap()["without_leader"], true);
    assert_eq!(audit2.all("restore.completed").len(), 1);
    for (_, _, db, _) in &dbs {
        eventually(
            "the snapshot restored",
            Duration::from_secs(10),
            async || {
                ids(db).await == (0..10).collect::<Vec<_>>()
                    && db
                        .status()
                        .standby
                        .unwrap()
                        .position
                        .lineage
                        .map(|l| l.to_string())
                        == Some(report.lineage.clone())
            },
        )
        .await;
    }

    // 4. A node that can lead again starts from the restored database and writes on.
    let (_, wal1, db1, _) = dbs.iter().find(|d| d.0 == "n1").unwrap().clone();
    cluster
        .start_node("n1", vec![singleton(&wal1, &db1)])
        .await
        .unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    assert_eq!(leader, "n1");
    eventually(
        "n1 leads its replica",
        Duration::from_secs(20),
        async || matches!(db1.role(), WalRole::Leader(_)),
    )
    .await;
    let token = db1.epoch().unwrap();
    assert!(
        token.get() > pos.epoch + 1,
        "a newer term than every epoch in the log"
    );
    db1.write(token, |c| c.execute_batch("INSERT INTO t(id) VALUES (100)"))
        .await
        .unwrap();
    let mut expected: Vec<i64> = (0..10).collect();
    expected.push(100);
    eventually(
        "the standby follows the new leader",
        Duration::from_secs(10),
        async || ids(&db2).await == expected,
    )
    .await;
    assert_eq!(ids(&db1).await, expected);
}
