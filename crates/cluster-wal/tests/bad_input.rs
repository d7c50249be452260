//! Bad input: a database file that is not SQLite is refused with an error naming the file and is
//! left untouched (nothing shipped: the log stays empty); a writer trying to switch the journal
//! mode away from WAL under a running leader is refused by SQLite (capture continues).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_core::stream::ReplicatedLog;
use cluster_wal::{WithSqlite, bootstrap};
use common::{Env, converge, exec};

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
