//! The key replication and failover scenarios over a real nats-server: the log is a JetStream
//! stream (R1 on one server, R3 on a 3-server cluster) and snapshots live in a JetStream object
//! store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::stream::ReplicatedLog;
use cluster_wal::record::Record;
use cluster_wal::{
    Durability, ErrorKind, Leader, LeaderConfig, LeaderStart, PromoteConfig, bootstrap, promote,
    snapshot,
};
use common::nats::NatsEnv;
use common::workload::step;
use common::*;

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB);
                      CREATE INDEX t_n ON t(n);";

async fn fill(leader: &Leader, n: usize) {
    for _ in 0..n {
        exec(
            leader,
            "INSERT INTO t(n, v) VALUES (abs(random() % 1000), randomblob(1500))",
        )
        .await;
    }
}

async fn randomised(env: NatsEnv, steps: usize) {
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let follower = env.follower("standby.db").await;
    let mut rng = Rng::new(0x7a75);
    for i in 0..steps {
        step(&leader, &mut rng).await;
        if i % 50 == 49 {
            converge(&leader, &follower).await;
            assert_same_pages(&leader_db, &env.path("standby.db"));
        }
    }
    let txid = converge(&leader, &follower).await;
    assert!(txid as usize > steps * 3 / 4, "only {txid} transactions");
    let p = follower.progress();
    assert_eq!(p.errors, 0, "{:?}", p.last_error);
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
    assert_integrity(&leader_db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_workload_over_nats_keeps_standby_page_identical() {
    randomised(NatsEnv::single().await, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_workload_over_an_r3_stream_keeps_standby_page_identical() {
    randomised(NatsEnv::cluster3().await, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_the_trimmed_stream_catches_up_from_a_snapshot_in_the_object_store() {
    let env = NatsEnv::single().await;
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let a = env.follower("a.db").await;
    let late = env.follower("late.db").await;
    fill(&leader, 10).await;
    converge(&leader, &late).await;
    drop(late.stop().await.unwrap());
    fill(&leader, 40).await;
    converge(&leader, &a).await;
    let snap = a.snapshot().await.unwrap();
    snapshot::publish(&env.store, &env.log, &snap, 1)
        .await
        .unwrap();
    let state = env.log.state().await.unwrap();
    assert_eq!(state.first_seq, snap.meta.stream_seq + 1, "stream trimmed");
    assert_eq!(snapshot::list(&env.store).await.unwrap().len(), 1);
    fill(&leader, 10).await;
    let fresh = env.follower("fresh.db").await;
    let late = env.follower("late.db").await;
    converge(&leader, &fresh).await;
    converge(&leader, &late).await;
    assert_eq!(fresh.progress().restores, 1);
    assert_eq!(late.progress().restores, 1);
    for f in [a, fresh, late] {
        drop(f.stop().await.unwrap());
    }
    leader.shutdown().await;
    for s in ["a.db", "fresh.db", "late.db"] {
        assert_same_pages(&leader_db, &env.path(s));
        assert_integrity(&env.path(s));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_record_in_the_stream_is_refused_and_the_standby_resyncs() {
    let env = NatsEnv::single().await;
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let f = env.follower("s.db").await;
    fill(&leader, 5).await;
    converge(&leader, &f).await;
    // Stop the leader, forge a corrupted copy of its last record at the stream tail, and
    // continue as the same leader after it.
    let start = leader.start_info().clone();
    let p = leader.shutdown().await;
    let last = env.last_seq().await;
    assert_eq!(p.acked_seq, last);
    let e = env.log.get(last).await.unwrap().unwrap();
    let mut bad = e.payload.to_vec();
    let i = bad.len() / 2;
    bad[i] ^= 0x55;
    let ack = env
        .log
        .append(
            e.headers.clone().with("Nats-Msg-Id", "forged"),
            Bytes::from(bad),
            Some(last),
        )
        .await
        .unwrap();
    let bad_seq = ack.seq;
    let leader = Leader::start(
        LeaderConfig::new(
            &leader_db,
            LeaderStart {
                base_txid: p.acked_txid,
                base_checksum: Some(p.acked_checksum),
                ..start
            },
            bad_seq,
        ),
        env.log(),
    )
    .await
    .unwrap();
    fill(&leader, 3).await;
    let pr = tokio::time::timeout(Duration::from_secs(10), f.wait_for(|p| p.errors > 0))
        .await
        .unwrap()
        .unwrap();
    let err = pr.last_error.unwrap();
    assert!(
        err.contains(&format!("corrupt record at stream seq {bad_seq}")) && err.contains("CRC-32C"),
        "{err}"
    );
    // A snapshot past the corrupted entry trims it away; the standby restores and converges.
    let snap = leader.snapshot().await.unwrap();
    snapshot::publish(&env.store, &env.log, &snap, 2)
        .await
        .unwrap();
    fill(&leader, 3).await;
    converge(&leader, &f).await;
    assert!(f.progress().restores >= 1);
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("s.db"));
    assert_integrity(&env.path("s.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_on_an_r3_stream_fences_the_zombie_leader() {
    let env = NatsEnv::cluster3().await;
    let old_db = env.path("old.db");
    let old = bootstrap(&old_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&old, SCHEMA).await;
    let candidate = env.follower("n2.db").await;
    let observer = env.follower("n3.db").await;
    fill(&old, 20).await;
    converge(&old, &candidate).await;
    let (log2, _) = env.node_log().await;
    let new = promote(candidate, log2, PromoteConfig::new("n2", 2))
        .await
        .unwrap();
    let fence_seq = env.last_seq().await;
    // The zombie's appends are rejected by the stream; it stops accepting writes.
    let mut zombie_attempts = 0;
    for _ in 0..5 {
        zombie_attempts += 1;
        let r = old
            .write(Durability::CommitWait, |c| {
                c.execute_batch("INSERT INTO t(n) VALUES (-1)")
            })
            .await;
        let err = r.expect_err("a zombie write must not be acknowledged");
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    }
    assert!(zombie_attempts > 0);
    assert!(
        old.progress().stopped.unwrap().contains("fenced"),
        "{:?}",
        old.progress()
    );
    assert_eq!(
        env.last_seq().await,
        fence_seq,
        "no zombie append was stored"
    );
    // A stale expected sequence is rejected by the stream itself.
    let rec = Record::decode(&env.log.get(fence_seq).await.unwrap().unwrap().payload).unwrap();
    let err = env
        .log
        .append(
            rec.headers().with("Nats-Msg-Id", "other"),
            rec.encode(),
            Some(fence_seq - 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, cluster_core::Error::Conflict { .. }), "{err}");
    let base = new.progress().acked_txid;
    for i in 0..20i64 {
        let (_, txid) = new
            .write(Durability::CommitWait, move |c| {
                c.execute("INSERT INTO t(n, v) VALUES (?1, randomblob(700))", [i])
                    .map(|_| ())
            })
            .await
            .unwrap();
        assert_eq!(txid, base + 1 + i as u64);
    }
    converge(&new, &observer).await;
    assert_eq!(observer.progress().position.epoch, 2);
    assert_eq!(observer.progress().errors, 0, "{:?}", observer.progress());
    drop(observer.stop().await.unwrap());
    old.shutdown().await;
    new.shutdown().await;
    assert_same_pages(&env.path("n2.db"), &env.path("n3.db"));
    assert_integrity(&env.path("n3.db"));
    let zombie_rows: i64 = rusqlite::Connection::open(env.path("n3.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE n < 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        zombie_rows, 0,
        "the zombie's writes leaked into the new history"
    );
}

/// Group commit over NATS: a burst of concurrent commit-wait writes. Every acknowledged write
/// is on the standby (its txid was acknowledged only with the record carrying it), several
/// transactions shared records, and the standby is page-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_commit_wait_writes_is_group_committed_and_fully_replicated() {
    let env = NatsEnv::single().await;
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let follower = env.follower("standby.db").await;
    converge(&leader, &follower).await;
    let leader = std::sync::Arc::new(leader);
    let before = leader.progress();
    const WRITERS: i64 = 32;
    const PER_WRITER: i64 = 40;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let leader = leader.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..PER_WRITER {
                    let id = w * PER_WRITER + k;
                    let (_, txid) = leader
                        .write(Durability::CommitWait, move |c| {
                            c.execute(
                                "INSERT INTO t(id, n, v) VALUES (?1, ?1, randomblob(100))",
                                [id],
                            )
                            .map(|_| ())
                        })
                        .await
                        .unwrap();
                    // Commit-wait: the log acknowledged the record carrying this txid.
                    assert!(leader.progress().acked_txid >= txid);
                    acked.push((id, txid));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let p = leader.progress();
    let txns = p.acked_txid - before.acked_txid;
    assert_eq!(txns, (WRITERS * PER_WRITER) as u64, "one txid per commit");
    let records = p.records_shipped - before.records_shipped;
    assert!(
        records < txns,
        "{records} records for {txns} transactions: nothing was group-committed"
    );
    // The log holds the whole txid range exactly once, in order, in contiguous runs.
    let mut next = before.acked_txid + 1;
    let mut coalesced = 0;
    for seq in before.acked_seq + 1..=env.last_seq().await {
        let e = env.log.get(seq).await.unwrap().unwrap();
        let Record::Txn(t) = Record::decode(&e.payload).unwrap() else {
            panic!("unexpected record at {seq}")
        };
        assert_eq!(t.first_txid, next, "txids not contiguous at seq {seq}");
        coalesced += usize::from(t.first_txid < t.txid);
        next = t.txid + 1;
    }
    assert_eq!(next, p.acked_txid + 1);
    assert!(coalesced > 0);
    converge(&leader, &follower).await;
    let fp = follower.progress();
    assert_eq!(fp.errors, 0, "{:?}", fp.last_error);
    drop(follower.stop().await.unwrap());
    leader.stop().await;
    let present: std::collections::BTreeSet<i64> = {
        let c = rusqlite::Connection::open(env.path("standby.db")).unwrap();
        let mut s = c.prepare("SELECT id FROM t").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !present.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on the standby: {missing:?}"
    );
    println!(
        "burst: {txns} concurrent commit-wait transactions in {records} records ({coalesced} carried several)"
    );
    assert_same_pages(&leader_db, &env.path("standby.db"));
    assert_integrity(&env.path("standby.db"));
    assert_integrity(&leader_db);
}
