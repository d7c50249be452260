//! Snapshots, catch-up, corruption, fencing and promotion on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_core::stream::ReplicatedLog;
use cluster_wal::record::Record;
use cluster_wal::{
    Durability, ErrorKind, PromoteConfig, Standby, StandbyOptions, WalError, bootstrap, promote,
    snapshot,
};
use common::*;

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB);";

async fn fill(leader: &cluster_wal::Leader, n: usize) {
    for _ in 0..n {
        exec(
            leader,
            "INSERT INTO t(n, v) VALUES (abs(random() % 1000), randomblob(1500))",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_the_trim_catches_up_from_a_snapshot() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let a = env.follower("a.db");
    // `late` applies a little, then stops and falls behind.
    let late = env.follower("late.db");
    fill(&leader, 10).await;
    converge(&leader, &late).await;
    drop(late.stop().await.unwrap());
    fill(&leader, 40).await;
    converge(&leader, &a).await;

    // Snapshot on standby `a`, keep one: the log is trimmed below its sequence.
    let snap = a.snapshot().await.unwrap();
    assert_eq!(snap.meta.txid, a.progress().position.txid);
    snapshot::publish(&env.store, &env.log, &snap, 1)
        .await
        .unwrap();
    let state = env.log.state_now();
    assert_eq!(state.first_seq, snap.meta.stream_seq + 1);
    fill(&leader, 10).await;

    // A brand-new standby and the lagging one both restore the snapshot and replay.
    let fresh = env.follower("fresh.db");
    let late = env.follower("late.db");
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
async fn a_standby_bootstrapped_from_a_non_empty_database_starts_from_the_snapshot() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    {
        let c = rusqlite::Connection::open(&leader_db).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(
            "INSERT INTO t(n, v) SELECT value, randomblob(500) FROM generate_series(1, 300)",
        )
        .unwrap_or_else(|_| {
            for i in 0..300 {
                c.execute("INSERT INTO t(n, v) VALUES (?1, randomblob(500))", [i])
                    .unwrap();
            }
        });
    }
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    let f = env.follower("s.db");
    fill(&leader, 5).await;
    converge(&leader, &f).await;
    assert_eq!(f.progress().restores, 1);
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("s.db"));
    assert_integrity(&env.path("s.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_record_is_refused_and_the_standby_resyncs_from_a_snapshot() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    let f = env.follower("s.db");
    fill(&leader, 5).await;
    let before = converge(&leader, &f).await;
    let applied_seq = f.stop().await.unwrap().position().stream_seq;
    fill(&leader, 5).await;
    leader
        .wait_acked(leader.progress().captured_txid)
        .await
        .unwrap();
    // A record the standby has not applied yet (group commit may have shipped the 5
    // transactions in fewer records).
    let bad_seq = (env.log.state_now().last_seq - 2).max(applied_seq + 1);
    assert!(env.log.tamper(bad_seq, |p| {
        let i = p.len() / 2;
        p[i] ^= 0x55;
    }));
    let audit = std::sync::Arc::new(RecordedAudit::default());
    let f = env.follower_audited("s.db", Some(audit.clone()));
    let p = tokio::time::timeout(Duration::from_secs(10), f.wait_for(|p| p.errors > 0))
        .await
        .unwrap()
        .unwrap();
    let err = p.last_error.unwrap();
    assert!(
        err.contains(&format!("corrupt record at stream seq {bad_seq}")) && err.contains("CRC-32C"),
        "{err}"
    );
    assert!(p.position.txid < leader.progress().captured_txid);
    assert!(p.position.txid >= before);
    // A snapshot past the corrupted entry (from the leader) lets the standby resync.
    let snap = leader.snapshot().await.unwrap();
    snapshot::publish(&env.store, &env.log, &snap, 1)
        .await
        .unwrap();
    fill(&leader, 3).await;
    converge(&leader, &f).await;
    assert!(f.progress().restores >= 1);
    // Both the divergence and the resync are audited.
    let divergence = audit.first("divergence").expect("wal.divergence audited");
    assert!(
        divergence["error"]
            .as_str()
            .unwrap()
            .contains(&format!("corrupt record at stream seq {bad_seq}")),
        "{divergence}"
    );
    // (It may first restore an older snapshot and meet the corrupted record again.)
    let restored = audit.all("standby.restored");
    assert!(
        restored
            .iter()
            .any(|d| d["reason"] == "divergence" && d["snapshot"] == snap.meta.id()),
        "{restored:?}"
    );
    drop(f.stop().await.unwrap());
    leader.shutdown().await;
    assert_same_pages(&leader_db, &env.path("s.db"));
    assert_integrity(&env.path("s.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_is_refused_before_anything_is_written() {
    let env = Env::new();
    let leader_db = env.path("leader.db");
    let leader = bootstrap(&leader_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, SCHEMA).await;
    fill(&leader, 3).await;
    leader
        .wait_acked(leader.progress().captured_txid)
        .await
        .unwrap();
    leader.shutdown().await;
    let path = env.path("s.db");
    // Seed the standby from the bootstrap snapshot, then apply the log by hand.
    let snap = snapshot::fetch_latest(&env.store).await.unwrap().unwrap();
    snap.restore(&path, false).unwrap();
    let mut s = Standby::open(&path, StandbyOptions::default()).unwrap();
    let last = env.log.state_now().last_seq;
    for seq in snap.meta.stream_seq + 1..=last {
        let e = env.log.get(seq).await.unwrap().unwrap();
        let mut rec = Record::decode(&e.payload).unwrap();
        if seq == last {
            // Re-encoded with a valid CRC but a wrong post-checksum.
            if let Record::Txn(t) = &mut rec {
                t.post_checksum ^= 1;
            }
            let rec = Record::decode(&rec.encode()).unwrap();
            let before_pages = pages(&path);
            let Record::Txn(t) = rec else {
                panic!("expected a txn")
            };
            let err = s.apply_chunk(seq, t).unwrap_err();
            assert!(
                matches!(err, WalError::ChecksumMismatch { what: "post", .. }),
                "{err}"
            );
            assert_eq!(err.kind(), ErrorKind::Resync);
            assert!(err.to_string().contains("nothing was applied"));
            assert_eq!(pages(&path), before_pages, "the standby was modified");
            // A wrong pre-checksum (divergence) is refused too.
            let e = env.log.get(seq).await.unwrap().unwrap();
            let Record::Txn(mut t) = Record::decode(&e.payload).unwrap() else {
                panic!()
            };
            t.pre_checksum ^= 1;
            let err = s.apply_chunk(seq, t).unwrap_err();
            assert!(
                matches!(err, WalError::ChecksumMismatch { what: "pre", .. }),
                "{err}"
            );
        } else {
            match rec {
                Record::Txn(t) => s.apply_chunk(seq, t).unwrap(),
                Record::EpochStart(e) => s.apply_epoch(seq, &e).unwrap(),
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_fences_the_old_leader_and_writes_continue() {
    let env = Env::new();
    let old_db = env.path("old.db");
    let old = bootstrap(&old_db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&old, SCHEMA).await;
    let candidate = env.follower("n2.db");
    let observer = env.follower("n3.db");
    fill(&old, 20).await;
    converge(&old, &candidate).await;

    // n2 wins epoch 2 while the old leader still runs (a zombie).
    let new = promote(candidate, env.log(), PromoteConfig::new("n2", 2))
        .await
        .unwrap();
    let fence_seq = env.log.state_now().last_seq;
    let base = new.progress().acked_txid;

    // The zombie commits a concurrent burst locally (group-committed: one record may carry
    // several of them), but its append is rejected and it stops accepting writes; not one of
    // the commit-wait writes is acknowledged.
    let old = std::sync::Arc::new(old);
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let old = old.clone();
            tokio::spawn(async move {
                old.write(Durability::CommitWait, |c| {
                    c.execute_batch("INSERT INTO t(n) VALUES (-1)")
                })
                .await
            })
        })
        .collect();
    for w in burst {
        let err = w
            .await
            .unwrap()
            .expect_err("a zombie write was acknowledged");
        assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    }
    let mut rx = old.subscribe();
    let p = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|p| p.stopped.is_some()),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(
        p.stopped.as_deref().unwrap().contains("fenced"),
        "{:?}",
        p.stopped
    );
    let err = old
        .write(Durability::CommitWait, |c| {
            c.execute_batch("INSERT INTO t(n) VALUES (-2)")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert_eq!(
        env.log.state_now().last_seq,
        fence_seq,
        "no zombie append was stored"
    );

    // A stale expected sequence is rejected by the log itself.
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
    assert!(matches!(err, cluster_core::Error::Conflict { .. }));

    // The new leader continues the txid sequence; the observer follows across the epoch.
    for i in 0..30i64 {
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
    assert_eq!(
        observer.progress().errors,
        0,
        "{:?}",
        observer.progress().last_error
    );
    let fresh = env.follower("n4.db");
    converge(&new, &fresh).await;
    for f in [observer, fresh] {
        drop(f.stop().await.unwrap());
    }
    old.stop().await;
    new.shutdown().await;
    for s in ["n3.db", "n4.db"] {
        assert_same_pages(&env.path("n2.db"), &env.path(s));
        assert_integrity(&env.path(s));
    }
    assert_integrity(&env.path("n2.db"));
    let zombie_rows: i64 = rusqlite::Connection::open(env.path("n2.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE n < 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        zombie_rows, 0,
        "the zombie's write leaked into the new history"
    );
    let _ = Bytes::new();
}
