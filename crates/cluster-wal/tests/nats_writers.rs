//! The writer matrix over a real nats-server: the database is written by an **external process**
//! on another SQLite library — the stock `sqlite3` CLI (Debian's 3.40.x), Python's stdlib
//! `sqlite3` (linked to the system library) and our bundled SQLite (this binary re-executed
//! with `--write`) — while the replication engine captures, ships and applies it. Each writer
//! goes through a graceful hand-over (writer exits, leader stops, standby promoted) and a SIGKILL
//! failover (writer killed mid-load, the old leader still running when the standby promotes),
//! then a hand-over back; every promotion must succeed and the replicas end page-identical.
//!
//! This target has its own `main` (`harness = false`) so that it can re-execute itself as the
//! bundled-SQLite writer process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cluster_wal::{PromoteConfig, bootstrap, promote};
use common::nats::{NatsEnv, eventually};
use common::{assert_integrity, assert_same_pages};
use tokio::process::{Child, Command};

const TESTS: [&str; 4] = [
    "sqlite3_cli_writer_survives_handover_and_sigkill_failover",
    "python_stdlib_writer_survives_handover_and_sigkill_failover",
    "bundled_writer_survives_handover_and_sigkill_failover",
    "loss_window_of_an_external_writer_poll_vs_inotify",
];

/// The external writers of the matrix.
#[derive(Debug, Clone, Copy)]
enum Writer {
    /// `/usr/bin/sqlite3` (or the first `sqlite3` on `PATH`) reading a script on stdin.
    Cli,
    /// `python3 -c …` with the standard library's `sqlite3`.
    Python,
    /// This test binary with `--write`: the bundled SQLite of `rusqlite`.
    Bundled,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write") {
        bundled_writer(
            Path::new(&args[1]),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        );
        return;
    }
    if args.iter().any(|a| a == "--list") {
        for t in TESTS {
            println!("{t}: test");
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut passed = 0;
    for (name, writer) in TESTS
        .iter()
        .zip([Writer::Cli, Writer::Python, Writer::Bundled])
    {
        if selected(name) {
            rt.block_on(matrix(writer));
            println!("test {name} ... ok");
            passed += 1;
        }
    }
    if selected(TESTS[3]) {
        rt.block_on(loss_window());
        println!("test {} ... ok", TESTS[3]);
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// The bundled-SQLite writer process: the same statements as the other writers.
fn bundled_writer(db: &Path, start: i64, n: i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(&setup_sql(start)).unwrap();
    for id in start..start + n {
        c.execute(&insert_sql(id), []).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Creates the table and one table per phase: every phase writes page 1 (the schema cookie).
fn setup_sql(start: i64) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);\n\
         CREATE TABLE IF NOT EXISTS phase_{start}(x);\n"
    )
}

/// One row per transaction; every 16th row is large so that the file grows (page 1 again).
fn insert_sql(id: i64) -> String {
    let size = if id % 16 == 0 { 3000 } else { 100 };
    format!("INSERT INTO t(id, v) VALUES ({id}, randomblob({size}))")
}

fn spawn_writer(w: Writer, db: &Path, start: i64, n: i64) -> Child {
    let mut cmd = match w {
        Writer::Cli => {
            let mut c = Command::new("sqlite3");
            c.arg(db);
            c
        }
        Writer::Python => {
            let mut c = Command::new("python3");
            c.args(["-c", PY_WRITER])
                .arg(db)
                .arg(start.to_string())
                .arg(n.to_string());
            c
        }
        Writer::Bundled => {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.arg("--write")
                .arg(db)
                .arg(start.to_string())
                .arg(n.to_string());
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("the {w:?} writer is required for this test ({e})"));
    let mut stdin = child.stdin.take().unwrap();
    if let Writer::Cli = w {
        let mut script = String::from(".timeout 10000\n");
        script.push_str(&setup_sql(start));
        for id in start..start + n {
            script.push_str(&insert_sql(id));
            script.push_str(";\n");
        }
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // A killed writer closes the pipe: the error is expected then.
            let _ = stdin.write_all(script.as_bytes()).await;
        });
    } else {
        drop(stdin);
    }
    child
}

const PY_WRITER: &str = r#"
import sqlite3, sys, time
db, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db, timeout=10, isolation_level=None)
c.executescript(f"CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB); CREATE TABLE IF NOT EXISTS phase_{start}(x);")
for i in range(start, start + n):
    size = 3000 if i % 16 == 0 else 100
    c.execute(f"INSERT INTO t(id, v) VALUES ({i}, randomblob({size}))")
    time.sleep(0.001)
"#;

/// Runs a writer to completion.
async fn write_all(w: Writer, db: &Path, start: i64, n: i64) {
    let status = spawn_writer(w, db, start, n).wait().await.unwrap();
    assert!(status.success(), "{w:?} writer failed: {status}");
}

/// Starts a writer with far more rows than it gets to write, waits until `at_least` of its rows
/// are in `db`, then SIGKILLs it.
async fn write_then_kill(w: Writer, db: &Path, start: i64, at_least: i64) {
    let mut child = spawn_writer(w, db, start, 1_000_000);
    let path: PathBuf = db.to_owned();
    eventually(Duration::from_secs(60), async || {
        rows_from(&path, start) >= at_least
    })
    .await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "the {w:?} writer was not killed");
}

fn rows_from(db: &Path, start: i64) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row("SELECT count(*) FROM t WHERE id >= ?1", [start], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

fn ids(db: &Path) -> std::collections::BTreeSet<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT id FROM t").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Epoch 1 on `a` (bootstrap), graceful hand-over to `b` (epoch 2), SIGKILL failover to `a`
/// (epoch 3, `b`'s leader still running), graceful hand-over to `b` again (epoch 4).
async fn matrix(w: Writer) {
    let env = NatsEnv::single().await;
    let (a, b) = (env.path("a.db"), env.path("b.db"));
    let (log, store) = env.node_log().await;

    // Term 1 on a.
    let leader_a = bootstrap(&a, "a", 1, log, store).await.unwrap();
    let follower_b = env.follower("b.db").await;
    write_all(w, &a, 1, 200).await;
    let txid = wait_captured(&leader_a).await;
    leader_a.shutdown().await;
    tokio::time::timeout(Duration::from_secs(30), follower_b.wait_applied(txid))
        .await
        .unwrap()
        .unwrap();

    // Graceful hand-over: term 2 on b.
    let (log, _) = env.node_log().await;
    let leader_b = promote(follower_b, log, PromoteConfig::new("b", 2))
        .await
        .unwrap_or_else(|e| panic!("{w:?}: graceful promotion of b failed: {e}"));
    assert_eq!(rows_from(&b, 1), 200);
    let follower_a = env.follower("a.db").await;
    write_then_kill(w, &b, 1001, 300).await;
    // Let a apply part of the load, not necessarily all of it.
    eventually(Duration::from_secs(30), async || {
        follower_a.progress().position.txid > txid + 50
    })
    .await;

    // SIGKILL failover: term 3 on a while b's leader still runs (and is fenced).
    let (log, store) = env.node_log().await;
    let leader_a = promote(follower_a, log.clone(), PromoteConfig::new("a", 3))
        .await
        .unwrap_or_else(|e| panic!("{w:?}: failover promotion of a failed: {e}"));
    leader_b.shutdown().await;
    // b may have commits the fence cut off: it needs a snapshot of the new term to rejoin.
    let snap = leader_a.snapshot().await.unwrap();
    cluster_wal::snapshot::publish(store.as_ref(), log.as_ref(), &snap, 2)
        .await
        .unwrap();
    let on_a = ids(&a);
    let on_b = ids(&b);
    let extra: Vec<_> = on_a.difference(&on_b).collect();
    assert!(
        extra.is_empty(),
        "a holds rows b never wrote: {extra:?} (a {} rows, b {} rows)",
        on_a.len(),
        on_b.len()
    );
    assert!(rows_from(&a, 1001) > 0, "nothing of term 2 reached a");
    println!(
        "{w:?}: failover kept {} of the {} rows committed in term 2",
        rows_from(&a, 1001),
        rows_from(&b, 1001)
    );

    // Hand-over back: b follows (its unshipped tail, if any, is discarded), term 4 on b.
    let follower_b = env.follower("b.db").await;
    write_all(w, &a, 5001, 100).await;
    let txid = wait_captured(&leader_a).await;
    leader_a.shutdown().await;
    tokio::time::timeout(Duration::from_secs(30), follower_b.wait_applied(txid))
        .await
        .unwrap()
        .unwrap();
    let (log, _) = env.node_log().await;
    let leader_b = promote(follower_b, log, PromoteConfig::new("b", 4))
        .await
        .unwrap_or_else(|e| panic!("{w:?}: second graceful promotion of b failed: {e}"));
    leader_b.shutdown().await;
    assert_same_pages(&a, &b);
    assert_integrity(&a);
    assert_integrity(&b);
}

/// Waits until the leader captured and shipped every foreign commit in the file (the writer
/// exited: nothing changes any more), returning the last txid.
async fn wait_captured(leader: &cluster_wal::Leader) -> u64 {
    let mut last = leader.progress().captured_txid;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = leader.progress().captured_txid;
        if now == last {
            leader.wait_acked(now).await.unwrap();
            return now;
        }
        last = now;
    }
}

const PY_ACK_WRITER: &str = r#"
import sqlite3, sys, time
db, n, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db, timeout=10, isolation_level=None)
c.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, v BLOB)")
print("READY", flush=True)
time.sleep(0.5)
for i in range(n):
    c.execute(f"INSERT INTO w(id, v) VALUES ({start + i}, randomblob(100))")
    print(f"ACK {i} {time.time_ns() // 1000}", flush=True)
    time.sleep(0.002)
"#;

/// The loss window of an external writer's commits: for each commit of a Python writer (its
/// wall clock right after `COMMIT` returned), the time until the log acknowledged it. A node
/// crash at time T loses exactly the commits whose window had not closed by T. Measured with
/// the 25 ms poll only and with the inotify watch (`LeaderConfig::watch_wal`), over real NATS;
/// printed (docs/BENCHMARKS.md), not asserted (no wall-clock assertions); asserted: every
/// commit is acknowledged.
async fn loss_window() {
    use cluster_wal::{Leader, LeaderConfig, LeaderStart};
    use tokio::io::AsyncBufReadExt;
    let env = NatsEnv::single().await;
    let db = env.path("w.db");
    let (log, store) = env.node_log().await;
    let first = bootstrap(&db, "a", 1, log.clone(), store).await.unwrap();
    let info = first.start_info().clone();
    let mut p = first.shutdown().await;
    for watch in [false, true] {
        let mut cfg = LeaderConfig::new(
            &db,
            LeaderStart {
                base_txid: p.acked_txid,
                base_checksum: Some(p.acked_checksum),
                ..info.clone()
            },
            p.acked_seq,
        );
        cfg.watch_wal = watch;
        let leader = Leader::start(cfg, log.clone()).await.unwrap();
        // (acked txid, µs) at every change.
        let mut rx = leader.subscribe();
        let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
        let rec = acks.clone();
        let sampler = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let t = cluster_wal::sqlite::now_us();
                let a = rx.borrow().acked_txid;
                rec.lock().unwrap().push((a, t));
            }
        });
        let n = 400;
        let mut child = Command::new("python3")
            .args(["-c", PY_ACK_WRITER])
            .arg(&db)
            .arg(n.to_string())
            .arg(if watch { n } else { 0 }.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is required");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("READY"));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let base = leader.progress().captured_txid;
        let mut commits = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            let mut it = l.split_whitespace().skip(1);
            let k: u64 = it.next().unwrap().parse().unwrap();
            let t: u64 = it.next().unwrap().parse().unwrap();
            commits.push((base + 1 + k, t));
        }
        assert!(child.wait().await.unwrap().success());
        let last = wait_captured(&leader).await;
        assert_eq!(last, base + n, "every commit captured, one txid each");
        p = leader.shutdown().await;
        sampler.abort();
        let acks = acks.lock().unwrap().clone();
        let mut windows: Vec<u64> = commits
            .iter()
            .map(|&(txid, t)| {
                let at = acks
                    .iter()
                    .find(|(a, _)| *a >= txid)
                    .map(|(_, at)| *at)
                    .unwrap_or_else(|| panic!("txid {txid} never acknowledged"));
                at.saturating_sub(t)
            })
            .collect();
        windows.sort_unstable();
        let q = |f: f64| windows[((windows.len() - 1) as f64 * f) as usize] as f64 / 1000.0;
        println!(
            "loss window ({}): {} commits, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            if watch {
                "inotify + 25 ms poll"
            } else {
                "25 ms poll only"
            },
            windows.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        );
    }
}
