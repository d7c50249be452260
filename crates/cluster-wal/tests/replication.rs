//! End-to-end replication on real SQLite files with the in-memory log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_core::stream::{AppendAck, LogEntry, LogState, LogStream, ReplicatedLog};
use cluster_wal::record::Record;
use cluster_wal::{Durability, bootstrap};
use common::workload::step;
use common::*;

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB);
                      CREATE INDEX t_n ON t(n);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_workload_keeps_standby_page_identical() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let follower = env.follower("standby.db");

    // Read-only queries on the standby keep working while it applies.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let path = env.path("standby.db");
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(conn) = cluster_wal::sqlite::open_readonly(&path) {
                    let n: i64 = conn
                        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                        .expect("standby read failed during apply");
                    assert!(n >= 0);
                    reads += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            reads
        })
    };

    let mut rng = Rng::new(0x5eed);
    for i in 0..300 {
        let what = step(&leader, &mut rng).await;
        if i % 60 == 59 {
            converge(&leader, &follower).await;
            assert_same_pages(&leader_db, &env.path("standby.db"));
            let _ = what;
        }
    }
    let txid = converge(&leader, &follower).await;
    stop.store(true, Ordering::SeqCst);
    assert!(
        reader.join().unwrap() > 0,
        "the reader made no successful read"
    );
    assert!(txid > 250, "only {txid} transactions replicated");
    let p = follower.progress();
    assert_eq!(p.errors, 0, "{:?}", p.last_error);
    let standby = follower.stop().await.unwrap();
    drop(standby);
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
    assert_integrity(&leader_db);
    assert_eq!(count(&leader_db, "t"), count(&env.path("standby.db"), "t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_checkpoints_reset_the_wal_and_replication_follows() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = {
        let log = env.log();
        let l = bootstrap(&leader_db, "n1", 1, log, env.store())
            .await
            .unwrap();
        // Restart with a small checkpoint threshold so that the WAL resets many times.
        let start = l.start_info().clone();
        let seq = l.progress().acked_seq;
        let checksum = l.progress().acked_checksum;
        l.shutdown().await;
        let mut cfg = cluster_wal::LeaderConfig::new(
            &leader_db,
            cluster_wal::LeaderStart {
                base_checksum: Some(checksum),
                ..start
            },
            seq,
        );
        cfg.checkpoint_frames = 20;
        cluster_wal::Leader::start(cfg, env.log()).await.unwrap()
    };
    exec(&leader, SCHEMA).await;
    let follower = env.follower("standby.db");
    for i in 0..400i64 {
        leader
            .write(Durability::Async, move |c| {
                c.execute("INSERT INTO t(n, v) VALUES (?1, randomblob(200))", [i])
                    .map(|_| ())
            })
            .await
            .unwrap();
    }
    converge(&leader, &follower).await;
    let wal_len = std::fs::metadata(cluster_wal::sqlite::wal_path(&leader_db))
        .unwrap()
        .len();
    assert!(
        wal_len < 200 * 4200,
        "WAL kept growing ({wal_len} bytes): checkpoints did not reset it"
    );
    follower.stop().await.unwrap();
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_wait_returns_after_the_log_acknowledged() {
    let env = Env::new();
    let leader = bootstrap(env.path("l.db"), "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    for i in 0..50i64 {
        let (_, txid) = leader
            .write(Durability::CommitWait, move |c| {
                c.execute("INSERT INTO t(n) VALUES (?1)", [i]).map(|_| ())
            })
            .await
            .unwrap();
        assert!(leader.progress().acked_txid >= txid);
        let last = env.log.state_now().last_seq;
        assert!(last >= leader.progress().acked_seq);
    }
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_standby_resumes_from_its_position() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let f = env.follower("s.db");
    for _ in 0..20 {
        exec(&leader, "INSERT INTO t(n, v) VALUES (1, randomblob(3000))").await;
    }
    converge(&leader, &f).await;
    drop(f.stop().await.unwrap());
    for _ in 0..20 {
        exec(&leader, "INSERT INTO t(n, v) VALUES (2, randomblob(3000))").await;
    }
    let f = env.follower("s.db");
    converge(&leader, &f).await;
    assert_eq!(f.progress().restores, 0, "resumed without a snapshot");
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("s.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_position_sidecar_is_recovered_by_checksum_search() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let f = env.follower("s.db");
    for _ in 0..10 {
        exec(&leader, "INSERT INTO t(n, v) VALUES (1, randomblob(100))").await;
    }
    converge(&leader, &f).await;
    drop(f.stop().await.unwrap());
    // Simulate a crash after SQLite committed but before the sidecar was written.
    let path = env.path("s.db");
    let mut pos = cluster_wal::position::load(&path).unwrap();
    pos.txid -= 3;
    pos.stream_seq -= 3;
    pos.checksum ^= 0xdead;
    cluster_wal::position::store(&path, &pos, false).unwrap();
    exec(&leader, "INSERT INTO t(n, v) VALUES (2, randomblob(100))").await;
    let f = env.follower("s.db");
    converge(&leader, &f).await;
    assert_eq!(f.progress().restores, 0, "recovered without a snapshot");
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &path);
}

/// A log whose appends wait while it is closed: holds the leader's first append in flight so
/// that everything committed meanwhile is group-committed into the next record(s).
struct GatedLog {
    inner: cluster_memory::MemoryLog,
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl ReplicatedLog for GatedLog {
    async fn append(
        &self,
        headers: cluster_core::Headers,
        payload: bytes::Bytes,
        expected_last_seq: Option<u64>,
    ) -> cluster_core::Result<AppendAck> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.append(headers, payload, expected_last_seq).await
    }
    async fn read_from(&self, seq: u64) -> cluster_core::Result<LogStream> {
        self.inner.read_from(seq).await
    }
    async fn get(&self, seq: u64) -> cluster_core::Result<Option<LogEntry>> {
        self.inner.get(seq).await
    }
    async fn state(&self) -> cluster_core::Result<LogState> {
        self.inner.state().await
    }
    async fn purge_below(&self, seq: u64) -> cluster_core::Result<u64> {
        self.inner.purge_below(seq).await
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
}

/// Coalesced records are applied exactly like their transactions one by one, also when the
/// run grows the database, shrinks it (DELETE + VACUUM) and grows it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_committed_records_across_shrink_and_growth_keep_the_standby_page_identical() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let (open_tx, open_rx) = tokio::sync::watch::channel(true);
    let log: Arc<dyn ReplicatedLog> = Arc::new(GatedLog {
        inner: env.log.clone(),
        open: open_rx,
    });
    let leader = bootstrap(&leader_db, "n1", 1, log, env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let follower = env.follower("standby.db");
    converge(&leader, &follower).await;
    let before = leader.progress();

    // Hold the next append: every write below is captured while it is in flight.
    open_tx.send(false).unwrap();
    let grow = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 30)
                INSERT INTO t(n, v) SELECT i, randomblob(700) FROM s";
    let mut sqls: Vec<&'static str> = vec![grow; 4];
    sqls.extend([
        "UPDATE t SET v = randomblob(100) WHERE n % 2 = 0",
        "DELETE FROM t WHERE n > 10",
        "VACUUM",
        grow,
        "UPDATE t SET n = n + 1",
        grow,
    ]);
    for &sql in &sqls {
        leader
            .write(Durability::Async, move |c| c.execute_batch(sql))
            .await
            .unwrap();
    }
    let txid = leader.progress().captured_txid;
    assert_eq!(txid, before.captured_txid + sqls.len() as u64);
    open_tx.send(true).unwrap();
    converge(&leader, &follower).await;

    let p = leader.progress();
    let records = p.records_shipped - before.records_shipped;
    assert!(
        records <= 2,
        "{records} records for {} transactions committed while one append was held",
        sqls.len()
    );
    let mut next = before.acked_txid + 1;
    for seq in before.acked_seq + 1..=env.log.state_now().last_seq {
        let e = env.log.get(seq).await.unwrap().unwrap();
        let Record::Txn(t) = Record::decode(&e.payload).unwrap() else {
            panic!("unexpected record at {seq}")
        };
        assert_eq!(t.first_txid, next);
        next = t.txid + 1;
    }
    assert_eq!(next, txid + 1);
    let fp = follower.progress();
    assert_eq!(fp.errors, 0, "{:?}", fp.last_error);
    assert_eq!(fp.position.txid, txid);
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
}

/// A standby that starts behind a backlog (randomised workload: VACUUM, big chunked
/// transactions, updates, deletes) applies the records already received in batches (fewer
/// SQLite commits than records) and ends page-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_applied_in_batches_and_the_standby_stays_page_identical() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let mut rng = Rng::new(0xba7c);
    for _ in 0..200 {
        step(&leader, &mut rng).await;
    }
    leader
        .wait_acked(leader.progress().captured_txid)
        .await
        .unwrap();
    let records = env.log.state_now().last_seq;
    let follower = env.follower("standby.db");
    let txid = converge(&leader, &follower).await;
    let p = follower.progress();
    assert_eq!(p.errors, 0, "{:?}", p.last_error);
    assert_eq!(p.position.txid, txid);
    assert!(
        p.apply_commits * 2 < records,
        "{} SQLite commits for {records} records: the backlog was not batched",
        p.apply_commits
    );
    // Live records after the backlog still apply.
    for _ in 0..20 {
        step(&leader, &mut rng).await;
    }
    converge(&leader, &follower).await;
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
}
