//! Bad input: a database file that is not SQLite is refused with an error naming the file and is
//! left untouched (nothing shipped: the log stays empty); a writer trying to switch the journal
//! mode away from WAL under a running leader is refused by SQLite (capture continues); a `-wal`
//! file copied from another database (other salts and checksums, another page size, or a last
//! frame that is not the indexed one) next to a standby or the leader's database is refused
//! naming it: nothing applied, nothing shipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use cluster_core::stream::ReplicatedLog;
use cluster_wal::{Durability, Follower, WithSqlite, bootstrap};
use common::{Env, converge, exec};
use rusqlite::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_sqlite_is_refused_naming_it_and_left_untouched() {
    let env = Env::new();
    let path = env.path("notes.db");
    let junk = b"this is a text file, not a database\n".repeat(200);
    std::fs::write(&path, &junk).unwrap();
    let err = WithSqlite::new(&path)
        .node_id("n1")
        .start(env.log(), env.store())
        .await
        .expect_err("a standby on a non-SQLite file");
    let msg = err.to_string();
    assert!(msg.contains("notes.db"), "the error names the file: {msg}");
    let err = bootstrap(&path, "n1", 1, env.log(), env.store())
        .await
        .expect_err("a leader on a non-SQLite file");
    let msg = err.to_string();
    assert!(msg.contains("notes.db"), "the error names the file: {msg}");
    assert_eq!(std::fs::read(&path).unwrap(), junk, "the file is untouched");
    assert_eq!(
        env.log.state().await.unwrap().last_seq,
        0,
        "nothing shipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_switch_the_journal_mode_away_from_wal_under_a_leader() {
    let env = Env::new();
    let db = env.path("leader.db");
    let leader = bootstrap(&db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    let follower = env.follower("standby.db");
    exec(&leader, "CREATE TABLE t(x); INSERT INTO t VALUES (1)").await;
    converge(&leader, &follower).await;
    let c = rusqlite::Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .unwrap_or_else(|e| format!("refused: {e}"));
    assert_ne!(mode.to_lowercase(), "delete", "the journal mode changed");
    drop(c);
    exec(&leader, "INSERT INTO t VALUES (2)").await;
    converge(&leader, &follower).await;
    assert_eq!(leader.progress().stopped, None);
    leader.shutdown().await;
    drop(follower.stop().await.unwrap());
    common::assert_same_pages(&db, &env.path("standby.db"));
}

/// Another database in WAL mode with committed frames in its `-wal` (the connection keeps the
/// file from being checkpointed away); its `-wal` path.
fn other_database(env: &Env, name: &str, page_size: u32) -> (Connection, PathBuf) {
    let path = env.path(name);
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE other(y); INSERT INTO other VALUES (randomblob(5000));"
    ))
    .unwrap();
    (c, PathBuf::from(format!("{}-wal", path.display())))
}

/// Waits until the follower reports an error containing `what`.
async fn refused(follower: &Follower, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = follower.progress().last_error.filter(|e| e.contains(what)) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not refused with {what:?}: {:?}",
            follower.progress()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_file_from_another_database_next_to_a_standby_is_refused_and_nothing_applied() {
    let env = Env::new();
    let leader = bootstrap(env.path("leader.db"), "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    let standbys = ["same-size.db", "page-size.db", "last-frame.db"];
    let followers: Vec<Follower> = standbys.iter().map(|s| env.follower(s)).collect();
    exec(&leader, "CREATE TABLE t(x); INSERT INTO t VALUES (1)").await;
    let mut txid = 0;
    for f in &followers {
        txid = converge(&leader, f).await;
    }
    let (_same, same_wal) = other_database(&env, "other.db", 4096);
    let (_small, small_wal) = other_database(&env, "other1k.db", 1024);
    let wal = |i: usize| PathBuf::from(format!("{}-wal", env.path(standbys[i]).display()));
    // Copied over the standbys' own `-wal` files (in place, as `cp` does).
    std::fs::copy(&same_wal, wal(0)).unwrap();
    std::fs::copy(&small_wal, wal(1)).unwrap();
    // The third keeps its own file, but its last committed frame is not the indexed one.
    let mut own = std::fs::read(wal(2)).unwrap();
    let last_frame_checksum = own.len() - 4096 - 24 + 16;
    own[last_frame_checksum] ^= 0xff;
    std::fs::write(wal(2), &own).unwrap();

    exec(&leader, "INSERT INTO t VALUES (2)").await;
    let reasons = [
        refused(&followers[0], "is not this database's WAL").await,
        refused(&followers[1], "page size 1024").await,
        refused(&followers[2], "is not the committed frame").await,
    ];
    for (i, reason) in reasons.iter().enumerate() {
        assert!(
            reason.contains(&wal(i).display().to_string()),
            "names the file: {reason}"
        );
        assert!(reason.contains("salts") || i == 2, "{reason}");
        // Nothing applied: still at the position before the foreign file appeared.
        assert_eq!(followers[i].progress().position.txid, txid, "{reason}");
    }
    leader.shutdown().await;
    for f in followers {
        drop(f.stop().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_file_from_another_database_next_to_the_leader_is_refused_and_nothing_shipped() {
    let env = Env::new();
    let db = env.path("leader.db");
    let leader = bootstrap(&db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    exec(&leader, "CREATE TABLE t(x); INSERT INTO t VALUES (1)").await;
    let acked = leader.progress().captured_txid;
    leader.wait_acked(acked).await.unwrap();
    let shipped = env.log.state().await.unwrap().last_seq;
    let (_other, other_wal) = other_database(&env, "other.db", 4096);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    // Moved into place in one step (a copy in place would be seen half-written by the
    // leader's 25 ms poll: a truncated WAL, refused as a continuity break instead).
    let tmp = env.path("incoming-wal");
    std::fs::copy(&other_wal, &tmp).unwrap();
    std::fs::rename(&tmp, &wal).unwrap();

    let err = leader
        .write(Durability::Async, |c| {
            c.execute_batch("INSERT INTO t VALUES (2)")
        })
        .await
        .expect_err("a commit captured from a foreign WAL");
    let stopped = leader.progress().stopped.unwrap_or_default();
    for msg in [err.to_string(), stopped] {
        assert!(msg.contains("is not this database's WAL"), "{msg}");
        assert!(
            msg.contains(&wal.display().to_string()),
            "names the file: {msg}"
        );
    }
    assert_eq!(
        env.log.state().await.unwrap().last_seq,
        shipped,
        "nothing shipped"
    );
    assert!(
        leader
            .write(Durability::Async, |c| c
                .execute_batch("INSERT INTO t VALUES (3)"))
            .await
            .is_err(),
        "the leader stays stopped"
    );
    leader.shutdown().await;
}
