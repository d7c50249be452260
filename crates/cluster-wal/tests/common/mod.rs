#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

pub mod nats;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cluster_memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::pagesum::normalise_page1;
use cluster_wal::{Durability, Follower, FollowerConfig, Leader, StandbyOptions};
use rusqlite::Connection;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub log: MemoryLog,
    pub store: MemoryObjectStore,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            log: MemoryLog::new(),
            store: MemoryObjectStore::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> Arc<dyn cluster_core::stream::ReplicatedLog> {
        Arc::new(self.log.clone())
    }

    pub fn store(&self) -> Arc<dyn cluster_core::stream::ObjectStore> {
        Arc::new(self.store.clone())
    }

    pub fn follower(&self, name: &str) -> Follower {
        self.follower_audited(name, None)
    }

    /// A follower whose audit events go to `audit`.
    pub fn follower_audited(
        &self,
        name: &str,
        audit: Option<std::sync::Arc<dyn cluster_wal::WalAudit>>,
    ) -> Follower {
        let mut cfg = FollowerConfig::new(self.path(name));
        cfg.audit = audit;
        cfg.retry_interval = Duration::from_millis(50);
        cfg.options = StandbyOptions {
            fsync_position: false,
        };
        Follower::start(cfg, self.log(), self.store()).unwrap()
    }
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every page of a database through `sqlite_dbpage`, page 1 normalised.
pub fn pages(path: &Path) -> Vec<(u32, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        .unwrap();
    let v: Vec<(u32, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    v.into_iter()
        .map(|(p, d)| {
            if p == 1 {
                (p, normalise_page1(&d))
            } else {
                (p, d)
            }
        })
        .collect()
}

pub fn assert_same_pages(a: &Path, b: &Path) {
    let pa = pages(a);
    let pb = pages(b);
    assert_eq!(
        pa.len(),
        pb.len(),
        "page counts differ: {} vs {}",
        pa.len(),
        pb.len()
    );
    for ((p, x), (_, y)) in pa.iter().zip(pb.iter()) {
        assert!(x == y, "page {p} differs");
    }
}

/// `PRAGMA integrity_check` on a fresh connection, and with the stock sqlite3 CLI.
pub fn assert_integrity(path: &Path) {
    let conn = Connection::open(path).unwrap();
    let r: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok", "integrity_check on {}", path.display());
    drop(conn);
    let out = std::process::Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA integrity_check;")
        .output()
        .unwrap_or_else(|e| {
            panic!("the sqlite3 CLI is required for this test ({e}): apt-get install -y sqlite3")
        });
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

pub fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Waits until the follower applied the leader's last captured txid.
pub async fn converge(leader: &Leader, follower: &Follower) -> u64 {
    let txid = leader.progress().captured_txid;
    leader.wait_acked(txid).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), follower.wait_applied(txid))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "standby did not reach txid {txid}: {:?}",
                follower.progress()
            )
        })
        .unwrap();
    txid
}

pub async fn exec(leader: &Leader, sql: &'static str) -> u64 {
    leader
        .write(Durability::Async, move |c| c.execute_batch(sql))
        .await
        .unwrap()
        .1
}

/// A [`cluster_wal::WalAudit`] that keeps what it is given.
#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct RecordedAudit(pub std::sync::Mutex<Vec<(String, serde_json::Value)>>);

#[allow(dead_code)]
impl RecordedAudit {
    /// The actions recorded so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The data of every record of `action`, in order.
    pub fn all(&self, action: &str) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// The data of the first record of `action`.
    pub fn first(&self, action: &str) -> Option<serde_json::Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, d)| d.clone())
    }
}

impl cluster_wal::WalAudit for RecordedAudit {
    fn record(&self, action: &str, data: serde_json::Value) {
        self.0.lock().unwrap().push((action.to_owned(), data));
    }
}
