//! A promotion that fails for a reason that repeats (here: the standby's file was written behind
//! the replicator's back, so it no longer matches its position) must not livelock the app: the
//! node tries once (appending no `EpochStart`: the file is checked against its position
//! first), then stops standing for leadership, reports why
//! (status, audit, `standby_ready`), and stands again only after the cause changed or an
//! operator cleared the block; then the recovery without a leader (`WalDb::resync`, behind
//! `cluster wal resync`) brings it back as a correct leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_core::{ActiveResource, RetryPolicy};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::SimCluster;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::record::Record;
use cluster_wal::{WalDb, WalResource, WalRole, WithSqlite};
use common::RecordedAudit;

async fn epoch_starts_by(log: &MemoryLog, node: &str) -> usize {
    let last = log.state_now().last_seq;
    let mut n = 0;
    for seq in 1..=last {
        if let Some(e) = log.get(seq).await.unwrap()
            && let Ok(Record::EpochStart(s)) = Record::decode(&e.payload)
            && s.node_id == node
        {
            n += 1;
        }
    }
    n
}

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

/// Samples `db` every 5 ms for `during`: it must never lead.
async fn never_leads(db: &WalDb, during: Duration) {
    let end = tokio::time::Instant::now() + during;
    while tokio::time::Instant::now() < end {
        assert!(
            !matches!(db.role(), WalRole::Leader(_)),
            "a blocked node became leader"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_that_fails_for_a_repeating_reason_is_tried_once_and_the_node_stops_campaigning()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::new();
    let store = MemoryObjectStore::new();
    let mut cluster = SimCluster::new("walblock", PlatformOptions::fast());
    let mut nodes: BTreeMap<String, (App, WalDb, Arc<WalResource>, Arc<RecordedAudit>)> =
        BTreeMap::new();
    for n in ["n1", "n2"] {
        let app = App::singleton("db").unwrap();
        let audit = Arc::new(RecordedAudit::default());
        let (wal, db) = WithSqlite::new(dir.path().join(format!("{n}.db")))
            .node_id(n)
            .catch_up_timeout(Duration::from_secs(2))
            .audit(audit.clone())
            .start(Arc::new(log.clone()), Arc::new(store.clone()))
            .await
            .unwrap();
        let check = app.clone();
        db.set_epoch_check(move |e| check.check_epoch(e));
        app.add_resource(wal.clone(), RetryPolicy::default());
        cluster.start_node(n, vec![app.clone()]).await.unwrap();
        nodes.insert(n.to_owned(), (app, db, wal, audit));
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(20)).await;
    let second = if first == "n1" { "n2" } else { "n1" }.to_owned();
    let (app1, db1, _, _) = nodes[&first].clone();
    let (_, db2, wal2, audit2) = nodes[&second].clone();
    let token = app1.fencing_token().unwrap();
    db1.write(token, |c| {
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    })
    .await
    .unwrap();
    for i in 0..20i64 {
        db1.write(token, move |c| {
            c.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(300))", [i])
                .map(|_| ())
        })
        .await
        .unwrap();
    }
    eventually(
        "the standby has 20 rows",
        Duration::from_secs(10),
        async || {
            db2.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .await
                .unwrap_or(0)
                == 20
        },
    )
    .await;
    // No snapshot to re-sync from (the bootstrap's is deleted): the failure will repeat.
    for o in store.list().await.unwrap() {
        store.delete(&o.name).await.unwrap();
    }
    // Someone writes on the standby's file: it no longer matches the position it applied.
    let rogue = rusqlite::Connection::open(dir.path().join(format!("{second}.db"))).unwrap();
    rogue.busy_timeout(Duration::from_secs(5)).unwrap();
    rogue
        .execute("INSERT INTO t(id, v) VALUES (999, x'00')", [])
        .unwrap();
    drop(rogue);
    assert!(wal2.leadership_blocked().is_none());
    assert_eq!(epoch_starts_by(&log, &second).await, 0);

    // The leader goes away: the standby wins, its promotion fails on the checksum.
    cluster.stop_node(&first).await.unwrap();
    eventually(
        "the promotion is blocked",
        Duration::from_secs(20),
        async || db2.status().promotion_blocked.is_some(),
    )
    .await;
    let block = db2.status().promotion_blocked.unwrap();
    assert!(
        block.reason.contains("checksum mismatch"),
        "reason: {}",
        block.reason
    );
    assert!(!wal2.standby_ready(), "a blocked standby is not ready");
    assert!(wal2.leadership_blocked().is_some());
    // No livelock: sampled every 5 ms for 4 s (many election cooldowns of the fast profile),
    // the node never leads, and it tried exactly once (one EpochStart for one term).
    never_leads(&db2, Duration::from_secs(4)).await;
    // The file is checked before the term's EpochStart would carry its checksum: nothing was
    // appended (a wrong base would make every standby that applies it diverge).
    assert_eq!(
        epoch_starts_by(&log, &second).await,
        0,
        "no EpochStart from a replica that does not match its position"
    );
    assert_eq!(audit2.all("promotion-blocked").len(), 1);
    assert_eq!(cluster.leader("db"), None, "nobody claims to lead");

    // Operator action: the block is lifted, the node stands again, fails the same way once
    // more (the file is still wrong) and blocks again — one more attempt, not a loop.
    assert!(db2.clear_promotion_block());
    assert_eq!(audit2.all("promotion-unblocked").len(), 1);
    eventually(
        "blocked again after the next attempt",
        Duration::from_secs(20),
        async || db2.status().promotion_blocked.is_some(),
    )
    .await;
    never_leads(&db2, Duration::from_secs(2)).await;
    assert_eq!(epoch_starts_by(&log, &second).await, 0);
    assert_eq!(
        audit2.all("promotion-blocked").len(),
        2,
        "{:?}",
        audit2.actions()
    );

    // Recovery without a leader (`cluster wal resync db --from <first>`): the stopped node's
    // replica (still following) becomes the newest snapshot, the blocked node restores it and
    // replays, is unblocked, wins the lease and promotes — without the rogue row.
    assert_eq!(cluster.leader("db"), None);
    let published = db1.resync(true).await.unwrap();
    assert!(published["published"].is_string(), "{published}");
    let restoring = db2.resync(false).await.unwrap();
    assert_eq!(restoring["was_blocked"], true, "{restoring}");
    assert_eq!(audit2.all("resync").len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !matches!(db2.role(), WalRole::Leader(_)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the re-synced node does not lead: {:?}; audit {:?}",
            db2.status(),
            audit2
                .0
                .lock()
                .unwrap()
                .iter()
                .skip(7)
                .take(8)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(db2.status().promotion_blocked.is_none());
    let rows: Vec<i64> = db2
        .read(|c| {
            let mut s = c.prepare("SELECT id FROM t ORDER BY id")?;
            s.query_map([], |r| r.get(0))?.collect()
        })
        .await
        .unwrap();
    assert_eq!(rows, (0..20).collect::<Vec<_>>(), "the rogue row is gone");
    assert!(db1.resync(false).await.is_ok(), "a standby can re-sync");
    let token = db2.epoch().unwrap();
    assert!(
        db2.resync(false).await.is_err(),
        "the leader refuses a re-sync"
    );
    db2.write(token, |c| c.execute_batch("INSERT INTO t(id) VALUES (100)"))
        .await
        .unwrap();
}
