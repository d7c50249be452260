//! Replication benchmark on real SQLite files, over the in-memory log and over a real
//! nats-server (JetStream stream + object store, R1, loopback):
//! * lag p50/p99 at a fixed commit rate (`WAL_BENCH_RATE`, default 1000 tx/s);
//! * maximum sustained replicated commit rate, async and commit-wait, with one writer (bound by
//!   the local commit's fsync, and for commit-wait by the append round trip) and with
//!   `WAL_BENCH_WRITERS` concurrent writers (default 32; queued writes share one WAL fsync and
//!   their transactions share appends by group commit);
//! * promotion time: from "leader gone" to the first commit-wait write acknowledged on the
//!   promoted standby (the election's lease detection comes on top, see ARCHITECTURE.md);
//! * catch-up of a fresh standby for a large database (`WAL_BENCH_DB_MIB`, default 1024):
//!   snapshot + upload, then snapshot restore from the object store plus replay.
//!
//! `WAL_BENCH_SECS` (default 5) sets the duration of each timed phase; `WAL_BENCH_BACKEND`
//! (`memory`, `nats` or `all`, default `all`) the backends; `WAL_BENCH_SKIP_CATCHUP=1` skips
//! the large-database phase; `WAL_BENCH_REPEAT` (default 1) repeats the max-rate phases.
//! `BENCH_QUICK=1` (`cargo xtask bench --quick`) runs 2 s phases and skips the large database.
//! Every file lives in a temporary directory removed at the end of its phase (the 1 GiB phase
//! needs about 4 GiB of free disk while it runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_memory::{MemoryLog, MemoryObjectStore};
use cluster_nats::{
    ConnectOptions, LogConfig, NatsConnection, NatsObjectStore, NatsReplicatedLog,
    ObjectStoreConfig,
};
use cluster_testkit::nats_server::NatsServer;
use cluster_wal::{
    Durability, Follower, FollowerConfig, Leader, PromoteConfig, bootstrap, promote, snapshot,
};

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

/// Where the log and the object store live.
enum Backend {
    Memory,
    Nats(NatsServer),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Nats(_) => "nats",
        }
    }

    /// A fresh log and store (a new stream/bucket per call on NATS), on a new connection.
    async fn open(&self, tag: &str) -> (Arc<dyn ReplicatedLog>, Arc<dyn ObjectStore>) {
        match self {
            Backend::Memory => (
                Arc::new(MemoryLog::new()) as Arc<dyn ReplicatedLog>,
                Arc::new(MemoryObjectStore::new()) as Arc<dyn ObjectStore>,
            ),
            Backend::Nats(server) => {
                let (log, store) = nats_handles(server, tag).await;
                (log, store)
            }
        }
    }

    /// Another handle (connection) to the same log and store.
    async fn reopen(
        &self,
        tag: &str,
        log: &Arc<dyn ReplicatedLog>,
        store: &Arc<dyn ObjectStore>,
    ) -> (Arc<dyn ReplicatedLog>, Arc<dyn ObjectStore>) {
        match self {
            Backend::Memory => (log.clone(), store.clone()),
            Backend::Nats(server) => nats_handles(server, tag).await,
        }
    }
}

async fn nats_handles(
    server: &NatsServer,
    tag: &str,
) -> (Arc<dyn ReplicatedLog>, Arc<dyn ObjectStore>) {
    let conn = NatsConnection::connect(ConnectOptions::new([server.url()]).name("wal-bench"))
        .await
        .unwrap();
    let log = NatsReplicatedLog::open(&conn, LogConfig::for_database("bench", "db", tag).unwrap())
        .await
        .unwrap();
    let store = NatsObjectStore::open(
        &conn,
        ObjectStoreConfig::for_database("bench", "db", tag).unwrap(),
    )
    .await
    .unwrap();
    (Arc::new(log), Arc::new(store))
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

struct Setup {
    leader: Leader,
    follower: Follower,
    log: Arc<dyn ReplicatedLog>,
}

async fn setup(b: &Backend, tag: &str, dir: &Path, durable: bool) -> Setup {
    let (log, store) = b.open(tag).await;
    let leader = bootstrap(dir.join("leader.db"), "n1", 1, log.clone(), store.clone())
        .await
        .unwrap();
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB)")
        })
        .await
        .unwrap();
    let (flog, fstore) = b.reopen(tag, &log, &store).await;
    let mut cfg = FollowerConfig::new(dir.join("standby.db"));
    cfg.options.fsync_position = durable;
    let follower = Follower::start(cfg, flog.clone(), fstore).unwrap();
    let txid = leader.progress().captured_txid;
    follower.wait_applied(txid).await.unwrap();
    follower.take_lag_samples();
    Setup {
        leader,
        follower,
        log: flog,
    }
}

async fn fixed_rate(b: &Backend, secs: u64, rate: u64, durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let tag = if durable { "fixed-d" } else { "fixed" };
    let s = setup(b, tag, dir.path(), durable).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = secs * rate;
    let t0 = Instant::now();
    let mut last = 0;
    for i in 0..n {
        tick.tick().await;
        last = small_insert(&s.leader, i as i64, Durability::Async).await;
    }
    let elapsed = t0.elapsed();
    s.follower.wait_applied(last).await.unwrap();
    let mut lags = s.follower.take_lag_samples();
    lags.sort_unstable();
    println!(
        "[{}] fixed rate {rate} tx/s for {secs} s (standby fsync {durable}): achieved {:.0} tx/s, {} txns applied, lag p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        b.name(),
        n as f64 / elapsed.as_secs_f64(),
        lags.len(),
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        pct(&lags, 1.0),
    );
    drop(s.follower.stop().await.unwrap());
    s.leader.shutdown().await;
}

async fn max_rate(b: &Backend, secs: u64, d: Durability, writers: u64) {
    let dir = tempfile::tempdir().unwrap();
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mode = if d == Durability::Async { "a" } else { "cw" };
    let tag = format!("max-{mode}-{writers}-{run}");
    let s = setup(b, &tag, dir.path(), false).await;
    let leader = Arc::new(s.leader);
    let p0 = leader.progress();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let leader = leader.clone();
            tokio::spawn(async move {
                let (mut n, mut last) = (0u64, 0u64);
                while Instant::now() < deadline {
                    last = last.max(small_insert(&leader, (w << 32 | n) as i64, d).await);
                    n += 1;
                }
                (n, last)
            })
        })
        .collect();
    let (mut n, mut last) = (0u64, 0u64);
    for t in tasks {
        let (tn, tl) = t.await.unwrap();
        n += tn;
        last = last.max(tl);
    }
    let commit_elapsed = t0.elapsed();
    s.follower.wait_applied(last).await.unwrap();
    let total = t0.elapsed();
    let mut lags = s.follower.take_lag_samples();
    lags.sort_unstable();
    let p = leader.progress();
    let records = p.records_shipped - p0.records_shipped;
    println!(
        "[{}] max rate ({d:?}, {writers} writer{}): {n} txns committed in {:.2} s = {:.0} tx/s; standby applied all after {:.2} s \
         = {:.0} replicated tx/s; lag p50 {:.3} ms, p99 {:.3} ms; {} records ({:.1} txns/record), {:.1} MiB shipped",
        b.name(),
        if writers == 1 { "" } else { "s" },
        commit_elapsed.as_secs_f64(),
        n as f64 / commit_elapsed.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        records,
        n as f64 / records.max(1) as f64,
        (p.bytes_shipped - p0.bytes_shipped) as f64 / 1048576.0,
    );
    drop(s.follower.stop().await.unwrap());
    leader.stop().await;
}

/// Promotion of a caught-up standby under load: time from the old leader's stop to the first
/// commit-wait write acknowledged by the new leader.
async fn failover(b: &Backend, rounds: u32) {
    let mut times = Vec::new();
    for r in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(b, &format!("fo{r}"), dir.path(), false).await;
        for i in 0..2000 {
            small_insert(&s.leader, i, Durability::Async).await;
        }
        let t0 = Instant::now();
        s.leader.gate().revoke();
        let new = promote(s.follower, s.log.clone(), PromoteConfig::new("n2", 2))
            .await
            .unwrap();
        small_insert(&new, -1, Durability::CommitWait).await;
        times.push(t0.elapsed().as_micros() as u64);
        s.leader.shutdown().await;
        new.shutdown().await;
    }
    times.sort_unstable();
    println!(
        "[{}] promotion to accepting writes ({} rounds, 2000 txns written before): p50 {:.1} ms, max {:.1} ms \
         (lease detection not included)",
        b.name(),
        rounds,
        pct(&times, 0.5),
        pct(&times, 1.0),
    );
}

/// A `mib` MiB database, a snapshot in the object store, the log trimmed behind it and 1000
/// more transactions: time for a fresh standby to restore and replay to the tail.
async fn catch_up(b: &Backend, mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (log, store) = b.open("catchup").await;
    let leader = bootstrap(
        dir.path().join("leader.db"),
        "n1",
        1,
        log.clone(),
        store.clone(),
    )
    .await
    .unwrap();
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v BLOB)")
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    // 4 MiB transactions of 4 KiB rows.
    for _ in 0..mib / 4 {
        leader
            .write(Durability::Async, |c| {
                c.execute_batch(
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)
                     INSERT INTO t(n, v) SELECT i, randomblob(4000) FROM s",
                )
            })
            .await
            .unwrap();
    }
    let txid = leader.progress().captured_txid;
    leader.wait_acked(txid).await.unwrap();
    let load = t0.elapsed();
    let t1 = Instant::now();
    let snap = leader.snapshot().await.unwrap();
    let image = snap.image.len();
    let read = t1.elapsed();
    snapshot::publish(store.as_ref(), log.as_ref(), &snap, 1)
        .await
        .unwrap();
    let publish = t1.elapsed();
    drop(snap);
    for i in 0..1000 {
        small_insert(&leader, i, Durability::Async).await;
    }
    let target = leader.progress().captured_txid;
    leader.wait_acked(target).await.unwrap();
    let (flog, fstore) = b.reopen("catchup", &log, &store).await;
    let t2 = Instant::now();
    let follower = Follower::start(
        FollowerConfig::new(dir.path().join("fresh.db")),
        flog,
        fstore,
    )
    .unwrap();
    follower.wait_applied(target).await.unwrap();
    let catch = t2.elapsed();
    println!(
        "[{}] large database: {:.0} MiB image; load + ship {:.1} s ({:.0} MiB/s of pages); snapshot + upload {:.1} s \
         (barrier read + verify {:.1} s); fresh standby restore + replay of 1000 txns: {:.1} s (restores {})",
        b.name(),
        image as f64 / 1048576.0,
        load.as_secs_f64(),
        leader.progress().bytes_shipped as f64 / 1048576.0 / load.as_secs_f64(),
        publish.as_secs_f64(),
        read.as_secs_f64(),
        catch.as_secs_f64(),
        follower.progress().restores,
    );
    drop(follower.stop().await.unwrap());
    leader.shutdown().await;
    // Free the disk now (server-side snapshot objects and log), not when the server exits.
    for o in store.list().await.unwrap() {
        store.delete(&o.name).await.unwrap();
    }
    let last = log.last_sequence().await.unwrap();
    log.purge_below(last + 1).await.unwrap();
}

fn main() {
    let quick = env_u64("BENCH_QUICK", 0) == 1;
    let secs = env_u64("WAL_BENCH_SECS", if quick { 2 } else { 5 });
    let rate = env_u64("WAL_BENCH_RATE", 1000);
    let mib = env_u64("WAL_BENCH_DB_MIB", 1024);
    let writers = env_u64("WAL_BENCH_WRITERS", 32);
    let repeat = env_u64("WAL_BENCH_REPEAT", 1);
    let skip_catchup = quick || env_u64("WAL_BENCH_SKIP_CATCHUP", 0) == 1;
    let which = std::env::var("WAL_BENCH_BACKEND").unwrap_or_else(|_| "all".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut backends = Vec::new();
    if which == "all" || which == "memory" {
        backends.push(Backend::Memory);
    }
    if which == "all" || which == "nats" {
        backends.push(Backend::Nats(NatsServer::start()));
    }
    rt.block_on(async {
        for b in &backends {
            fixed_rate(b, secs, rate, false).await;
            fixed_rate(b, secs, rate, true).await;
            for _ in 0..repeat {
                max_rate(b, secs, Durability::Async, 1).await;
                max_rate(b, secs, Durability::Async, writers).await;
                max_rate(b, secs, Durability::CommitWait, 1).await;
                max_rate(b, secs, Durability::CommitWait, writers).await;
            }
            failover(b, 5).await;
            if !skip_catchup {
                catch_up(b, mib).await;
            }
        }
    });
}
