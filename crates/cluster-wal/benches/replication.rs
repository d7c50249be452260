//! Replication benchmark with the in-memory log (real SQLite files in a temp dir):
//! lag p50/p99 at a fixed commit rate, maximum sustained replicated commit rate (async and
//! commit-wait). `WAL_BENCH_SECS` (default 5) sets the duration of each phase and
//! `WAL_BENCH_RATE` (default 1000) the fixed rate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_wal::memory::{MemoryLog, MemoryObjectStore};
use cluster_wal::{Durability, Follower, FollowerConfig, Leader, bootstrap};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn small_insert(leader: &Leader, i: i64, d: Durability) -> u64 {
    leader
        .write(d, move |c| {
            c.execute("INSERT INTO t(n, v) VALUES (?1, randomblob(100))", [i])
                .map(|_| ())
        })
        .await
        .unwrap()
        .1
}

async fn setup(dir: &std::path::Path, durable: bool) -> (Leader, Follower) {
    let log = Arc::new(MemoryLog::new());
    let store = Arc::new(MemoryObjectStore::new());
    let leader = bootstrap(dir.join("leader.db"), "n1", 1, log.clone(), store.clone())
        .await
        .unwrap();
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB)")
        })
        .await
        .unwrap();
    let mut cfg = FollowerConfig::new(dir.join("standby.db"));
    cfg.options.fsync_position = durable;
    let follower = Follower::start(cfg, log, store).unwrap();
    let txid = leader.progress().captured_txid;
    follower.wait_applied(txid).await.unwrap();
    follower.take_lag_samples();
    (leader, follower)
}

async fn fixed_rate(secs: u64, rate: u64, durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = setup(dir.path(), durable).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = secs * rate;
    let t0 = Instant::now();
    let mut last = 0;
    for i in 0..n {
        tick.tick().await;
        last = small_insert(&leader, i as i64, Durability::Async).await;
    }
    let elapsed = t0.elapsed();
    follower.wait_applied(last).await.unwrap();
    let mut lags = follower.take_lag_samples();
    lags.sort_unstable();
    println!(
        "fixed rate {rate} tx/s for {secs} s (standby fsync {durable}): achieved {:.0} tx/s, {} txns applied, lag p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        n as f64 / elapsed.as_secs_f64(),
        lags.len(),
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        pct(&lags, 1.0),
    );
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
}

async fn max_rate(secs: u64, d: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = setup(dir.path(), false).await;
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut last = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        last = small_insert(&leader, n as i64, d).await;
        n += 1;
    }
    let commit_elapsed = t0.elapsed();
    follower.wait_applied(last).await.unwrap();
    let total = t0.elapsed();
    let mut lags = follower.take_lag_samples();
    lags.sort_unstable();
    println!(
        "max rate ({d:?}): {n} txns committed in {:.2} s = {:.0} tx/s; standby applied all after {:.2} s \
         = {:.0} replicated tx/s; lag p50 {:.3} ms, p99 {:.3} ms; {} bytes shipped",
        commit_elapsed.as_secs_f64(),
        n as f64 / commit_elapsed.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        leader.progress().bytes_shipped,
    );
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
}

fn main() {
    let secs = env_u64("WAL_BENCH_SECS", 5);
    let rate = env_u64("WAL_BENCH_RATE", 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        fixed_rate(secs, rate, false).await;
        fixed_rate(secs, rate, true).await;
        max_rate(secs, Durability::Async).await;
        max_rate(secs, Durability::CommitWait).await;
    });
}
