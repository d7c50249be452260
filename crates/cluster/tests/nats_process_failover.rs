//! Process-level failover over a real nats-server: three node processes, SIGKILL of the
//! leader's process, a new leader within the lease TTL plus a bound.
//!
//! This test target has its own `main` (`harness = false`): run with `--node <url> <platform>
//! <node>` the binary is a node process printing `ACTIVE <node> <epoch>` / `PASSIVE <node>`
//! lines; run without, it is the test, which spawns itself three times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cluster::PlatformOptions;
use cluster_testkit::nats_server::NatsServer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn node_binary() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("--node") {
        rt.block_on(node_main(&args[1], &args[2], &args[3]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("sigkill_of_the_leader_process_fails_over_within_ttl_plus_bound: test");
        return;
    }
    rt.block_on(sigkill_of_the_leader_process_fails_over_within_ttl_plus_bound());
    println!("test sigkill_of_the_leader_process_fails_over_within_ttl_plus_bound ... ok");
}

/// The node process: one Singleton app `db` printing its transitions.
async fn node_main(url: &str, platform: &str, node: &str) {
    use cluster::App;
    let conn = cluster::nats::connect(cluster::nats::ConnectOptions::new([url]))
        .await
        .unwrap();
    let app = App::singleton("db").unwrap();
    let me = node.to_owned();
    app.on_active(move |ctx| {
        let me = me.clone();
        async move {
            println!("ACTIVE {me} {}", ctx.epoch.map(|e| e.get()).unwrap_or(0));
            Ok(())
        }
    });
    let me = node.to_owned();
    app.on_passive(move |_| {
        let me = me.clone();
        async move {
            println!("PASSIVE {me}");
            Ok(())
        }
    });
    let p = cluster::nats::platform(&conn, platform, node, 1)
        .unwrap()
        .options(PlatformOptions::fast())
        .build()
        .unwrap();
    p.register(&app).unwrap();
    println!("READY {node}");
    p.run().await.unwrap();
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn spawn(url: &str, node: &str, lines: mpsc::UnboundedSender<(String, Instant)>) -> Proc {
    let mut child = Command::new(node_binary())
        .args(["--node", url, "pf", node])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut reader = BufReader::new(out).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = lines.send((line, Instant::now()));
        }
    });
    Proc { child }
}

async fn next_active(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    within: Duration,
) -> (String, u64, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let (line, at) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("an ACTIVE line in time")
            .expect("children alive");
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.first() == Some(&"ACTIVE") {
            return (parts[1].to_owned(), parts[2].parse().unwrap(), at);
        }
    }
}

async fn sigkill_of_the_leader_process_fails_over_within_ttl_plus_bound() {
    let server = NatsServer::start();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut procs = std::collections::BTreeMap::new();
    for n in ["n1", "n2", "n3"] {
        procs.insert(n.to_owned(), spawn(&server.url(), n, tx.clone()));
    }
    let (first, e1, _) = next_active(&mut rx, Duration::from_secs(20)).await;
    // Let the others finish starting so they are campaigning.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    let mut leader = procs.remove(&first).unwrap();
    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    let (second, e2, at) = next_active(&mut rx, Duration::from_secs(20)).await;
    assert_ne!(second, first);
    assert!(e2 > e1, "epoch {e1} then {e2}");
    let timing = PlatformOptions::fast().election;
    let took = at - killed_at;
    // The lease expires TTL after the last renewal (at most TTL after the kill); the expiry event
    // and the CAS add milliseconds. Bound: TTL + 500 ms.
    assert!(
        took <= timing.lease_ttl + Duration::from_millis(500),
        "failover took {took:?} (TTL {:?})",
        timing.lease_ttl
    );
    assert!(
        took >= timing.act_window() - timing.renew_interval,
        "failover after {took:?} is before the old leader's deadline could have passed"
    );
    println!("process failover took {took:?}");
}
