//! Process-level chaos over a real nats-server: the leader is a separate OS process.
//!
//! The leader process runs [`WRITERS`] concurrent commit-wait writers, so its transactions are
//! group-committed (several per record) and batches are in flight when it is signalled.
//!
//! * SIGKILL of the leader process under a commit-wait load → after promotion of the standby,
//!   every transaction the leader acknowledged is present.
//! * A zombie leader (SIGSTOP across a failover, then SIGCONT) → every append it attempts after
//!   the new epoch's `EpochStart` is rejected by the stream, and no history diverges.
//!
//! This target has its own `main` (`harness = false`): run as `--leader <url> <db>` it is the
//! leader process (printing `READY`, `ACK <id>` after each acknowledged commit and
//! `ERR <id> <kind>` for refused ones); run without arguments it is the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cluster_core::stream::ReplicatedLog;
use cluster_wal::record::Record;
use cluster_wal::{Durability, PromoteConfig, bootstrap, promote};
use common::nats::{NatsEnv, connect};
use common::{assert_integrity, assert_same_pages, converge};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Concurrent writers of the leader process.
const WRITERS: i64 = 8;

const TESTS: [&str; 2] = [
    "sigkill_of_the_leader_process_loses_no_acknowledged_transaction",
    "a_zombie_leader_resumed_after_failover_has_every_append_rejected",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("--leader") {
        rt.block_on(leader_main(&args[1], Path::new(&args[2])));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        for t in TESTS {
            println!("{t}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let mut passed = 0;
    if selected(TESTS[0]) {
        rt.block_on(sigkill_of_the_leader_process_loses_no_acknowledged_transaction());
        println!("test {} ... ok", TESTS[0]);
        passed += 1;
    }
    if selected(TESTS[1]) {
        rt.block_on(a_zombie_leader_resumed_after_failover_has_every_append_rejected());
        println!("test {} ... ok", TESTS[1]);
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// The leader process: bootstraps the lineage (epoch 1) and commits one row per transaction in
/// commit-wait mode from [`WRITERS`] concurrent tasks, forever.
async fn leader_main(url: &str, db: &Path) {
    let conn = connect(&[url.to_owned()]).await;
    let log = cluster_nats::NatsReplicatedLog::open(&conn, NatsEnv::log_config(1))
        .await
        .unwrap();
    let store = cluster_nats::NatsObjectStore::open(&conn, NatsEnv::store_config(1))
        .await
        .unwrap();
    let leader = bootstrap(
        db,
        "n1",
        1,
        std::sync::Arc::new(log),
        std::sync::Arc::new(store),
    )
    .await
    .unwrap();
    leader
        .write(Durability::CommitWait, |c| {
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        })
        .await
        .unwrap();
    println!("READY");
    let leader = std::sync::Arc::new(leader);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let leader = leader.clone();
            tokio::spawn(async move {
                for k in 0i64.. {
                    let id = 1 + w + k * WRITERS;
                    let r = leader
                        .write(Durability::CommitWait, move |c| {
                            c.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(200))", [id])
                                .map(|_| ())
                        })
                        .await;
                    match r {
                        Ok(_) => println!("ACK {id}"),
                        Err(e) => {
                            println!("ERR {id} {:?}", e.kind());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

struct Proc {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Proc {
    fn spawn(url: &str, db: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--leader", url, db.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().unwrap().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Reads lines until `pred` holds for one (returned) or the deadline passes.
    async fn until(&mut self, within: Duration, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("expected output from the leader process in time")
                .expect("leader process output ended");
            if pred(&line) {
                return line;
            }
        }
    }
}

fn acked(line: &str) -> Option<i64> {
    line.strip_prefix("ACK ").and_then(|n| n.parse().ok())
}

fn ids(db: &Path) -> std::collections::BTreeSet<i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT id FROM t").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn sigkill_of_the_leader_process_loses_no_acknowledged_transaction() {
    let env = NatsEnv::single().await;
    let mut leader = Proc::spawn(&env.urls[0], &env.path("leader.db"));
    leader
        .until(Duration::from_secs(20), |l| l == "READY")
        .await;
    let follower = env.follower("standby.db").await;
    let mut acks = Vec::new();
    while acks.len() < 300 {
        let l = leader
            .until(Duration::from_secs(20), |l| l.starts_with("ACK"))
            .await;
        acks.extend(acked(&l));
    }
    leader.signal("-KILL");
    leader.child.wait().await.unwrap();
    // Every ACK the process printed before it died.
    while let Some(l) = leader.lines.recv().await {
        acks.extend(acked(&l));
    }
    let killed = Instant::now();
    let (log, _) = env.node_log().await;
    let new = promote(follower, log, PromoteConfig::new("n2", 2))
        .await
        .unwrap();
    let (_, txid) = new
        .write(Durability::CommitWait, |c| {
            c.execute_batch("INSERT INTO t(id) VALUES (-1)")
        })
        .await
        .unwrap();
    let failover = killed.elapsed();
    let present = ids(&env.path("standby.db"));
    let missing: Vec<i64> = acks
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged transactions lost after promotion: {missing:?}",
        missing.len()
    );
    let last_ack = *acks.last().unwrap();
    println!(
        "sigkill: {} acks (last {last_ack}), {} rows after promotion ({} committed but unacknowledged), \
         promotion + first commit-wait write {failover:?}, txid {txid}",
        acks.len(),
        present.len() - 1,
        present.len() - 1 - acks.len()
    );
    new.shutdown().await;
    assert_integrity(&env.path("standby.db"));
}

async fn a_zombie_leader_resumed_after_failover_has_every_append_rejected() {
    let env = NatsEnv::single().await;
    let mut zombie = Proc::spawn(&env.urls[0], &env.path("leader.db"));
    zombie
        .until(Duration::from_secs(20), |l| l == "READY")
        .await;
    let candidate = env.follower("n2.db").await;
    let observer = env.follower("n3.db").await;
    let mut acks = Vec::new();
    while acks.len() < 150 {
        let l = zombie
            .until(Duration::from_secs(20), |l| l.starts_with("ACK"))
            .await;
        acks.extend(acked(&l));
    }
    zombie.signal("-STOP");
    // Drain what the process printed before it stopped.
    while let Ok(Some(l)) =
        tokio::time::timeout(Duration::from_millis(300), zombie.lines.recv()).await
    {
        acks.extend(acked(&l));
    }
    let (log, _) = env.node_log().await;
    let new = promote(candidate, log, PromoteConfig::new("n2", 2))
        .await
        .unwrap();
    let fence_seq = env.last_seq().await;
    // The zombie's load was group-committed: records carrying several transactions.
    let mut coalesced = 0;
    for seq in 1..fence_seq {
        let Some(e) = env.log.get(seq).await.unwrap() else {
            continue;
        };
        if let Record::Txn(t) = Record::decode(&e.payload).unwrap() {
            coalesced += usize::from(t.first_txid < t.txid);
        }
    }
    assert!(
        coalesced > 0,
        "no record of the zombie carried several transactions"
    );
    for i in 0..20i64 {
        new.write(Durability::CommitWait, move |c| {
            c.execute("INSERT INTO t(id, v) VALUES (?1, x'00')", [100_000 + i])
                .map(|_| ())
        })
        .await
        .unwrap();
    }
    zombie.signal("-CONT");
    // The zombie keeps trying: collect its results for a while.
    let mut late_acks = Vec::new();
    let mut refused = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while let Ok(Some(l)) = tokio::time::timeout_at(until, zombie.lines.recv()).await {
        if let Some(id) = acked(&l) {
            late_acks.push(id);
        } else if l.starts_with("ERR") {
            assert!(
                l.ends_with("Fenced"),
                "zombie write refused for another reason: {l}"
            );
            refused += 1;
        }
    }
    assert!(
        refused >= 5,
        "the zombie made only {refused} refused attempts"
    );
    // An ACK printed after SIGCONT can only be a write acknowledged before the fence (in flight
    // when the process stopped): every acknowledged id must be in the new history.
    acks.extend(late_acks.iter().copied());
    // 100% of the zombie's appends after the fence were rejected: every entry after
    // EpochStart{2} carries epoch 2.
    let last = env.last_seq().await;
    let mut zombie_entries = 0;
    for seq in fence_seq..=last {
        let e = env.log.get(seq).await.unwrap().unwrap();
        if e.headers.get("Gc-Repl-Epoch") != Some("2") {
            zombie_entries += 1;
        }
    }
    assert_eq!(
        zombie_entries, 0,
        "entries of the old epoch after the fence"
    );
    zombie.signal("-KILL");
    converge(&new, &observer).await;
    assert_eq!(observer.progress().errors, 0, "{:?}", observer.progress());
    drop(observer.stop().await.unwrap());
    new.shutdown().await;
    let present = ids(&env.path("n2.db"));
    let missing: Vec<i64> = acks
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged zombie writes lost: {missing:?}"
    );
    assert_same_pages(&env.path("n2.db"), &env.path("n3.db"));
    assert_integrity(&env.path("n3.db"));
    println!(
        "zombie: {} acks before the failover ({coalesced} records carried several transactions), {} late acks \
         (in flight at SIGSTOP), {refused} writes refused after SIGCONT, 0 appends after the fence",
        acks.len() - late_acks.len(),
        late_acks.len()
    );
}
