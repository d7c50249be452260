//! A writer killed between writing its commit frame and publishing it in the wal-index leaves a
//! valid-looking commit frame that SQLite ignores (the next writer overwrites it). Capture must
//! never ship it: the standby would hold a transaction the leader's database does not have, and
//! the overwrite would break the capture's frame chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use cluster_wal::bootstrap;
use cluster_wal::sqlite::wal_path;
use cluster_wal::wal::{FRAME_HEADER_LEN, WalCursor, WalHeader, read_committed, wal_checksum};
use common::{Env, assert_same_pages, converge, count, exec};

/// Writes, right after the last committed frame, a copy of it with one changed byte and a
/// correct checksum chain: exactly what a writer killed before its wal-index update leaves.
fn append_phantom_commit(wal: &Path) {
    let bytes = std::fs::read(wal).unwrap();
    let header = WalHeader::parse(&bytes[..32]).unwrap();
    let (txns, end) = read_committed(&mut Cursor::new(&bytes), WalCursor::start(header)).unwrap();
    assert!(!txns.is_empty(), "no committed frame to copy");
    let len = end.frame_len() as usize;
    let last = end.offset as usize - len;
    let mut frame = bytes[last..last + len].to_vec();
    assert_ne!(u32::from_be_bytes(frame[4..8].try_into().unwrap()), 0);
    frame[FRAME_HEADER_LEN + 200] ^= 0xff;
    let sum = wal_checksum(header.big_endian, &frame[..8], end.checksum);
    let sum = wal_checksum(header.big_endian, &frame[FRAME_HEADER_LEN..], sum);
    frame[16..20].copy_from_slice(&sum.0.to_be_bytes());
    frame[20..24].copy_from_slice(&sum.1.to_be_bytes());
    let f = std::fs::OpenOptions::new().write(true).open(wal).unwrap();
    f.write_all_at(&frame, end.offset).unwrap();
    // The raw reader sees one more transaction: only the wal-index says it is not committed.
    let bytes = std::fs::read(wal).unwrap();
    let (more, _) = read_committed(&mut Cursor::new(&bytes), WalCursor::start(header)).unwrap();
    assert_eq!(more.len(), txns.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_frame_beyond_the_wal_index_end_is_never_shipped() {
    let env = Env::new();
    let db = env.path("leader.db");
    let leader = bootstrap(&db, "n1", 1, env.log(), env.store())
        .await
        .unwrap();
    let follower = env.follower("standby.db");
    exec(
        &leader,
        "CREATE TABLE t(x); INSERT INTO t VALUES (zeroblob(300))",
    )
    .await;
    let txid = converge(&leader, &follower).await;

    append_phantom_commit(&wal_path(&db));
    // Many poll intervals (25 ms) with the phantom in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        leader.progress().captured_txid,
        txid,
        "the phantom commit was captured"
    );

    // The next real commit overwrites the phantom frame and is captured normally.
    let next = exec(&leader, "INSERT INTO t VALUES (2)").await;
    assert_eq!(next, txid + 1);
    assert_eq!(converge(&leader, &follower).await, txid + 1);
    leader.shutdown().await;
    drop(follower.stop().await.unwrap());
    assert_eq!(count(&env.path("standby.db"), "t"), 2);
    assert_same_pages(&db, &env.path("standby.db"));
}
