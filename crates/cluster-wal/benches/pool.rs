//! Commit rate of the app-facing APIs on one leader over the in-memory log, real SQLite file:
//! `WalPool` fenced transactions (sqlx) against `WalDb::write` (rusqlite closure on the
//! writer actor), async and commit-wait, small transactions (one 100-byte row), sequential
//! from one task; and read latency through the pool. Baseline in the same run: a plain sqlx
//! pool on an unreplicated WAL-mode file (`synchronous=FULL`, like the pool's connections).
//! `WAL_BENCH_SECS` (default 3) per phase.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::sqlx;
use cluster_wal::{Durability, WalDb, WithSqlite};

fn secs() -> Duration {
    let s = std::env::var("WAL_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3u64);
    Duration::from_secs(s)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn phase(name: &str, db: &WalDb, sqlx_api: bool, d: Durability) {
    let token = Epoch(1);
    let until = Instant::now() + secs();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while Instant::now() < until {
        let t = Instant::now();
        if sqlx_api {
            let mut tx = db.pool().begin(token).await.unwrap();
            sqlx::query("INSERT INTO t(v) VALUES (randomblob(100))")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit_with(d).await.unwrap();
        } else {
            db.write_with(token, d, |c| {
                c.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])
            })
            .await
            .unwrap();
        }
        lat.push(t.elapsed().as_micros() as u64);
    }
    let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{name:<28} {rate:>8.0} tx/s   latency p50 {:.3} ms  p99 {:.3} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

async fn reads(db: &WalDb) {
    let pool = db.pool();
    let until = Instant::now() + secs();
    let mut lat = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let mut conn = pool.acquire().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id < 100")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    println!(
        "{:<28} {:>8.0} q/s    latency p50 {:.3} ms  p99 {:.3} ms",
        "pool read (acquire+query)",
        lat.len() as f64 / secs().as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

/// The same transactions through a plain sqlx pool on an unreplicated file.
async fn raw_sqlx(dir: &std::path::Path) {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let opts = SqliteConnectOptions::new()
        .filename(dir.join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .execute(&pool)
        .await
        .unwrap();
    let until = Instant::now() + secs();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while Instant::now() < until {
        let t = Instant::now();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO t(v) VALUES (randomblob(100))")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        lat.push(t.elapsed().as_micros() as u64);
    }
    let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{:<28} {rate:>8.0} tx/s   latency p50 {:.3} ms  p99 {:.3} ms",
        "raw sqlx (no replication)",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    pool.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (wal, db) = WithSqlite::new(dir.path().join("bench.db"))
            .node_id("n1")
            .start(
                std::sync::Arc::new(MemoryLog::new()),
                std::sync::Arc::new(MemoryObjectStore::new()),
            )
            .await
            .unwrap();
        wal.activate(Epoch(1)).await.unwrap();
        db.write(Epoch(1), |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        })
        .await
        .unwrap();
        raw_sqlx(dir.path()).await;
        phase("WalDb::write async", &db, false, Durability::Async).await;
        phase("WalPool FencedTx async", &db, true, Durability::Async).await;
        phase(
            "WalDb::write commit-wait",
            &db,
            false,
            Durability::CommitWait,
        )
        .await;
        phase(
            "WalPool FencedTx commit-wait",
            &db,
            true,
            Durability::CommitWait,
        )
        .await;
        reads(&db).await;
        wal.shutdown().await;
    });
}
