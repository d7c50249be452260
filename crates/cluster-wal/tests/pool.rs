//! The app-facing sqlx pool (`WalDb::pool`) on real SQLite files over the in-memory log: token
//! checked write transactions on the leader replicate page-identically, stale tokens and
//! commits that bypass `WalPool::begin` are refused (by the commit hook inside SQLite),
//! commit-wait returns after the log acknowledged, standbys are read-only and serve queries
//! during apply, and a promoted standby's pool accepts writes with the new epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_core::stream::ReplicatedLog;
use cluster_wal::record::H_TXID;
use cluster_wal::sqlx;
use cluster_wal::{Durability, ErrorKind, WalDb, WalError, WalResource, WalRole, WithSqlite};
use common::{Env, assert_integrity, assert_same_pages};

async fn start(env: &Env, name: &str, durability: Durability) -> (Arc<WalResource>, WalDb) {
    WithSqlite::new(env.path(&format!("{name}.db")))
        .node_id(name)
        .durability(durability)
        .start(env.log(), env.store())
        .await
        .unwrap()
}

/// Waits until the standby `db` applied the leader's last captured txid.
async fn converge(leader: &WalDb, standby: &WalDb) -> u64 {
    let p = leader.status().leader.unwrap();
    let txid = p.captured_txid;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let applied = standby.status().standby.map_or(0, |s| s.position.txid);
        if applied >= txid {
            return txid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standby at txid {applied}, leader captured {txid}: {:?}",
            standby.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count(db: &WalDb) -> i64 {
    let mut conn = db.pool().acquire().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

async fn has_row(db: &WalDb, id: i64) -> bool {
    let mut conn = db.pool().acquire().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    n == 1
}

async fn insert(db: &WalDb, token: Epoch, ids: std::ops::Range<i64>) -> cluster_wal::Result<()> {
    let mut tx = db.pool().begin(token).await?;
    for id in ids {
        sqlx::query("INSERT INTO t(id, v) VALUES (?, randomblob(200))")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await.map(|_| ())
}

async fn create_table(db: &WalDb, token: Epoch) {
    let mut tx = db.pool().begin(token).await.unwrap();
    sqlx::query("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_writes_replicate_and_are_readable_on_the_standby() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::CommitWait).await;
    let (_wal2, db2) = start(&env, "n2", Durability::CommitWait).await;
    wal1.activate(Epoch(1)).await.unwrap();
    assert_eq!(db1.pool().role(), WalRole::Leader(Epoch(1)));
    create_table(&db1, Epoch(1)).await;
    for i in 0..20 {
        insert(&db1, Epoch(1), i * 10..i * 10 + 10).await.unwrap();
    }
    // A big transaction (spills over many pages) and updates/deletes.
    let mut tx = db1.pool().begin(Epoch(1)).await.unwrap();
    for id in 1000..1400 {
        sqlx::query("INSERT INTO t(id, v) VALUES (?, randomblob(3000))")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE t SET v = randomblob(50) WHERE id < 50")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM t WHERE id >= 1300")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // A rolled-back transaction leaves nothing.
    let mut tx = db1.pool().begin(Epoch(1)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (99999, 'x')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    converge(&db1, &db2).await;
    assert_eq!(count(&db1).await, 500);
    assert_eq!(
        count(&db2).await,
        500,
        "rows visible through the standby's pool"
    );
    assert!(!has_row(&db2, 99999).await);
    assert_same_pages(db1.path(), db2.path());
    assert_integrity(db2.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_wait_returns_after_the_log_acknowledged_the_transaction() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::CommitWait).await;
    wal1.activate(Epoch(1)).await.unwrap();
    create_table(&db1, Epoch(1)).await;
    for i in 0..20 {
        let mut tx = db1.pool().begin(Epoch(1)).await.unwrap();
        sqlx::query("INSERT INTO t(id, v) VALUES (?, 'x')")
            .bind(i)
            .execute(&mut *tx)
            .await
            .unwrap();
        let txid = tx
            .commit()
            .await
            .unwrap()
            .expect("commit-wait reports the txid");
        // When commit returns, the log holds the transaction: its last entry carries it.
        let state = env.log.state_now();
        let last = env.log.get(state.last_seq).await.unwrap().unwrap();
        let logged: u64 = last.headers.get(H_TXID).unwrap().parse().unwrap();
        assert_eq!(logged, txid, "the log's last entry is this commit");
        let p = db1.status().leader.unwrap();
        assert!(p.acked_txid >= txid && p.acked_seq >= state.last_seq);
    }
    // Async durability returns after the local commit; the doorbell still ships it at once.
    let mut tx = db1.pool().begin(Epoch(1)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (100, 'async')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let before = db1.status().leader.unwrap().acked_txid;
    assert_eq!(tx.commit_with(Durability::Async).await.unwrap(), None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while db1.status().leader.unwrap().acked_txid <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "async commit shipped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tokens_and_commits_bypassing_the_token_are_refused() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::CommitWait).await;
    let (wal2, db2) = start(&env, "n2", Durability::CommitWait).await;
    // The app's epoch check (the lease): accepts the next `budget` checks (all when < 0).
    let budget = Arc::new(AtomicI64::new(-1));
    let b2 = budget.clone();
    db1.set_epoch_check(move |e| {
        let left = b2.load(Ordering::SeqCst);
        if left < 0 || (left > 0 && b2.fetch_sub(1, Ordering::SeqCst) > 0) {
            Ok(())
        } else {
            Err(cluster_core::Error::NotLeader {
                leader: None,
                epoch: Some(e),
            })
        }
    });
    wal1.activate(Epoch(5)).await.unwrap();
    create_table(&db1, Epoch(5)).await;
    insert(&db1, Epoch(5), 0..10).await.unwrap();
    let pool = db1.pool();

    // A stale (or future) token is refused at begin.
    for stale in [Epoch(4), Epoch(6)] {
        let err = pool.begin(stale).await.unwrap_err();
        assert!(matches!(err, WalError::NotWritable(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::Fenced);
    }
    // A write through a plain pool connection (no token) is vetoed by the commit hook, on a
    // healthy leader too.
    let mut raw = pool.acquire().await.unwrap();
    let err = sqlx::query("INSERT INTO t(id, v) VALUES (100, 'raw')")
        .execute(&mut *raw)
        .await
        .unwrap_err();
    let err = WalError::from(err);
    assert!(matches!(err, WalError::NotWritable(_)), "{err}");
    // Checkpoints and journal-mode changes are denied on pool connections (the capture owns
    // the WAL); reading the mode is fine.
    for sql in [
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA wal_checkpoint",
        "PRAGMA journal_mode=DELETE",
        "PRAGMA wal_autocheckpoint=1000",
    ] {
        let err = sqlx::query(sql).execute(&mut *raw).await.unwrap_err();
        assert!(err.to_string().contains("not authorized"), "{sql}: {err}");
    }
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // So is a COMMIT statement run inside a FencedTx instead of `commit()`.
    let mut tx = pool.begin(Epoch(5)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (101, 'sneaky')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("COMMIT").execute(&mut *tx).await.unwrap_err();
    assert!(
        matches!(WalError::from(err), WalError::NotWritable(_)),
        "COMMIT outside FencedTx::commit is refused"
    );
    drop(tx);
    // The lease lapses (the app's epoch check fails): begin and commit are refused.
    let mut tx = pool.begin(Epoch(5)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (102, 'late')")
        .execute(&mut *tx)
        .await
        .unwrap();
    budget.store(0, Ordering::SeqCst);
    let err = tx.commit().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    assert_eq!(
        pool.begin(Epoch(5)).await.unwrap_err().kind(),
        ErrorKind::Fenced
    );
    // The lease lapses between the check in `commit` and SQLite's commit: the commit hook's
    // own check refuses it (begin and commit pass, the hook's check is the third).
    budget.store(-1, Ordering::SeqCst);
    let mut tx = pool.begin(Epoch(5)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (105, 'lapsed inside commit')")
        .execute(&mut *tx)
        .await
        .unwrap();
    budget.store(1, Ordering::SeqCst);
    let err = tx.commit().await.unwrap_err();
    assert!(
        matches!(err, WalError::NotWritable(ref m) if m.contains("commit refused")),
        "vetoed inside SQLite: {err}"
    );
    budget.store(-1, Ordering::SeqCst);

    // Step-down while a transaction is open and a raw connection is held: both are refused
    // afterwards, the raw one by the commit hook (the gate of that term is closed).
    let mut tx = pool.begin(Epoch(5)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (103, 'after step-down')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut held = pool.acquire().await.unwrap();
    wal1.deactivate().await.unwrap();
    let err = tx.commit().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "{err}");
    let err = sqlx::query("INSERT INTO t(id, v) VALUES (104, 'held')")
        .execute(&mut *held)
        .await
        .unwrap_err();
    assert!(
        matches!(WalError::from(err), WalError::NotWritable(_)),
        "a connection of the old term cannot commit"
    );
    drop((held, raw));
    let err = pool.begin(Epoch(5)).await.unwrap_err();
    assert!(matches!(err, WalError::NotLeader(_)), "{err}");

    // n2 leads epoch 6; none of the refused rows exists anywhere.
    wal2.activate(Epoch(6)).await.unwrap();
    insert(&db2, Epoch(6), 200..210).await.unwrap();
    converge(&db2, &db1).await;
    for db in [&db1, &db2] {
        assert_eq!(count(db).await, 20);
        for id in 100..=105 {
            assert!(!has_row(db, id).await, "row {id} was refused");
        }
    }
    assert_same_pages(db1.path(), db2.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_pool_is_read_only_and_serves_queries_during_apply() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::Async).await;
    let (_wal2, db2) = start(&env, "n2", Durability::Async).await;
    wal1.activate(Epoch(1)).await.unwrap();
    create_table(&db1, Epoch(1)).await;
    insert(&db1, Epoch(1), 0..10).await.unwrap();
    converge(&db1, &db2).await;

    let standby = db2.pool();
    assert_eq!(standby.role(), WalRole::Standby);
    let err = standby.begin(Epoch(1)).await.unwrap_err();
    assert!(matches!(err, WalError::NotLeader(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Fenced);
    assert!(err.to_string().contains("standby"), "{err}");
    let mut conn = standby.acquire().await.unwrap();
    let err = sqlx::query("INSERT INTO t(id, v) VALUES (-1, 'x')")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    let err = WalError::from(err);
    assert!(matches!(err, WalError::NotLeader(_)), "{err}");
    drop(conn);

    // Readers on the standby while the leader writes 10-row transactions and the standby
    // applies them: every query succeeds, sees whole transactions and never goes back.
    let writer = {
        let db1 = db1.clone();
        tokio::spawn(async move {
            for i in 1..150i64 {
                insert(&db1, Epoch(1), i * 10..i * 10 + 10).await.unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let pool = db2.pool();
        readers.push(tokio::spawn(async move {
            let mut last = 0i64;
            let mut queries = 0u32;
            while last < 1500 {
                let (n, m): (i64, i64) = sqlx::query_as("SELECT count(*), max(id) FROM t")
                    .fetch_one(&pool.current().await)
                    .await
                    .unwrap();
                assert_eq!(n % 10, 0, "whole transactions only");
                assert_eq!(m + 1, n, "consistent snapshot");
                assert!(n >= last, "never goes back: {n} < {last}");
                last = n;
                queries += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            queries
        }));
    }
    writer.await.unwrap();
    for r in readers {
        let queries = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("readers saw every transaction")
            .unwrap();
        assert!(queries > 1);
    }
    converge(&db1, &db2).await;
    assert_same_pages(db1.path(), db2.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_pool_accepts_writes_with_the_new_epoch() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::CommitWait).await;
    let (wal2, db2) = start(&env, "n2", Durability::CommitWait).await;
    // The app keeps these handles across role changes.
    let (pool1, pool2) = (db1.pool(), db2.pool());
    wal1.activate(Epoch(1)).await.unwrap();
    create_table(&db1, Epoch(1)).await;
    insert(&db1, Epoch(1), 0..10).await.unwrap();
    converge(&db1, &db2).await;
    // Standby pool in use before the promotion.
    assert!(matches!(
        pool2.begin(Epoch(1)).await.unwrap_err(),
        WalError::NotLeader(_)
    ));
    assert_eq!(count(&db2).await, 10);

    wal1.deactivate().await.unwrap();
    wal2.activate(Epoch(2)).await.unwrap();
    assert_eq!(pool2.role(), WalRole::Leader(Epoch(2)));
    assert_eq!(
        pool2.begin(Epoch(1)).await.unwrap_err().kind(),
        ErrorKind::Fenced,
        "the old term's token is stale"
    );
    let mut tx = pool2.begin(Epoch(2)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (10, 'new term')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(tx.commit().await.unwrap().is_some());
    insert(&db2, Epoch(2), 11..20).await.unwrap();
    // The former leader's pool is now a read-only standby pool that sees the new rows.
    assert_eq!(pool1.role(), WalRole::Standby);
    assert!(matches!(
        pool1.begin(Epoch(2)).await.unwrap_err(),
        WalError::NotLeader(_)
    ));
    converge(&db2, &db1).await;
    assert_eq!(count(&db1).await, 20);
    assert_same_pages(db1.path(), db2.path());

    // And back: n1 promoted with epoch 3 writes through the same handle.
    wal2.deactivate().await.unwrap();
    wal1.activate(Epoch(3)).await.unwrap();
    let mut tx = pool1.begin(Epoch(3)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (20, 'third term')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    converge(&db1, &db2).await;
    assert_eq!(count(&db2).await, 21);
    assert_same_pages(db1.path(), db2.path());
    wal1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restore_closes_the_pool_first_and_queries_resume_after_it() {
    let env = Env::new();
    let (wal1, db1) = start(&env, "n1", Durability::CommitWait).await;
    let (_wal2, db2) = start(&env, "n2", Durability::CommitWait).await;
    wal1.activate(Epoch(1)).await.unwrap();
    create_table(&db1, Epoch(1)).await;
    insert(&db1, Epoch(1), 0..10).await.unwrap();
    db1.snapshot_now(Epoch(1)).await.unwrap();
    // Another writer moves the log on (a re-sent copy of the last entry, which standbys skip):
    // n1's next append is refused, so its next commit stays local. After stepping down, n1's
    // file is ahead of the log and its follower must restore the snapshot, while the leader
    // pool's connections are still open (idle): the restore closes them first.
    let last = env
        .log
        .get(env.log.state_now().last_seq)
        .await
        .unwrap()
        .unwrap();
    let mut headers = cluster_core::transport::Headers::new();
    for (k, v) in last.headers.iter() {
        if k != cluster_core::stream::MSG_ID_HEADER {
            headers.insert(k, v);
        }
    }
    env.log.append(headers, last.payload, None).await.unwrap();
    let mut tx = db1.pool().begin(Epoch(1)).await.unwrap();
    sqlx::query("INSERT INTO t(id, v) VALUES (500, 'unshipped')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        tx.commit().await.unwrap_err().kind(),
        ErrorKind::Fenced,
        "committed locally, never acknowledged"
    );
    assert!(has_row(&db1, 500).await);
    wal1.deactivate().await.unwrap();
    // Readers keep querying n1 (pool and `WalDb::read`) while its follower restores and
    // replays: they wait for the restore instead of failing.
    let pool = db1.pool();
    let mut queries = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = pool.acquire().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        // The rusqlite read API is fenced the same way.
        let m: i64 = db1
            .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert!(m == 10 || m == 11, "{m}");
        queries += 1;
        if n == 10 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restore within 30 s: {:?}",
            db1.status()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(queries >= 1);
    let st = db1.status().standby.unwrap();
    assert!(st.restores >= 1, "{st:?}");
    assert!(
        !has_row(&db1, 500).await,
        "the unshipped commit was discarded"
    );
    converge_standbys(&db1, &db2).await;
    assert_same_pages(db1.path(), db2.path());
}

/// Waits until two standbys applied the same txid.
async fn converge_standbys(a: &WalDb, b: &WalDb) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ta = a.status().standby.map_or(0, |s| s.position.txid);
        let tb = b.status().standby.map_or(0, |s| s.position.txid);
        if ta == tb && ta > 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ta} vs {tb}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
