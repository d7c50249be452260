//! `cargo xtask e2e|demo`: end-to-end tests with the real `cluster` binary and the multi-node
//! demo.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{run, tools};

/// Runs the CLI's end-to-end tests (real nats-server, real daemons).
pub(crate) fn e2e(root: &Path) -> Result<()> {
    let nats = tools::ensure_nats_server(root)?;
    let nats = nats.to_string_lossy().to_string();
    run(
        root,
        "cargo",
        &[
            "test",
            "-p",
            "cluster-cli",
            "--test",
            "e2e",
            "--test",
            "cli",
            "--test",
            "e2e_placement",
            "--",
            "--nocapture",
        ],
        &[("NATS_SERVER_BIN", &nats)],
    )?;
    // All 4 rounds (the CI command runs round 0 only while the WAL-continuity bug of issue 12
    // is open).
    run(
        root,
        "cargo",
        &[
            "test",
            "-p",
            "cluster-cli",
            "--test",
            "e2e_wal_failover",
            "--",
            "--nocapture",
        ],
        &[("NATS_SERVER_BIN", &nats), ("CLUSTER_E2E_WAL_ROUNDS", "4")],
    )
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills the children on drop (the demo cleans up even when it fails).
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (name, child) in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
            println!("    stopped {name}");
        }
    }
}

fn leader(cluster: &Path, args: &[&str]) -> Option<(String, u64)> {
    let out = Command::new(cluster)
        .args(args)
        .args(["--json", "status"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let app = v["apps"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == "scheduler")?;
    Some((app["leader"].as_str()?.to_owned(), app["epoch"].as_u64()?))
}

/// Starts nats-server and 3 daemons with `examples/cluster.toml`, shows the leader, kills it
/// with SIGKILL, shows the failover and cleans up.
pub(crate) fn demo(root: &Path) -> Result<()> {
    let nats = tools::ensure_nats_server(root)?;
    run(root, "cargo", &["build", "-p", "cluster-cli"], &[])?;
    let cluster = target_dir(root).join("debug").join("cluster");
    let config = root.join("examples").join("cluster.toml");
    let port = free_port()?;
    let url = format!("nats://127.0.0.1:{port}");
    let store = std::env::temp_dir().join(format!("cluster-demo-{}", std::process::id()));
    std::fs::create_dir_all(&store)?;
    let mut procs = Procs(Vec::new());
    println!("==> nats-server -js on {url}");
    let server = Command::new(&nats)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nats-server")?;
    let args = [
        "--config",
        config.to_str().context("config path")?,
        "--nats",
        &url,
    ];
    let mut daemons = Vec::new();
    for node in ["node-1", "node-2", "node-3"] {
        std::thread::sleep(Duration::from_millis(300));
        println!("==> cluster run --config examples/cluster.toml --nats {url} --node {node}");
        let log = std::fs::File::create(store.join(format!("{node}.log")))?;
        let child = Command::new(&cluster)
            .args(["run"])
            .args(args)
            .args(["--node", node])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        daemons.push((node.to_owned(), child));
    }
    let wait_leader = |not: Option<&str>| -> Result<(String, u64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((l, e)) = leader(&cluster, &args)
                && Some(l.as_str()) != not
            {
                return Ok((l, e));
            }
            if Instant::now() > deadline {
                bail!("no leader within 30s; logs in {}", store.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let result = (|| -> Result<()> {
        let (first, epoch) = wait_leader(None)?;
        let _ = Command::new(&cluster).args(args).arg("status").status();
        println!("==> leader of scheduler: {first} (epoch {epoch}); killing it with SIGKILL");
        let (_, child) = daemons
            .iter_mut()
            .find(|(n, _)| *n == first)
            .context("leader process")?;
        let t0 = Instant::now();
        child.kill()?;
        let _ = child.wait();
        let (next, epoch2) = wait_leader(Some(&first))?;
        println!(
            "==> failover: {next} leads scheduler (epoch {epoch2}), seen {:.1}s after the kill",
            t0.elapsed().as_secs_f64()
        );
        let _ = Command::new(&cluster).args(args).arg("status").status();
        Ok(())
    })();
    println!("==> cleaning up");
    procs.0.extend(daemons);
    procs.0.push(("nats-server".to_owned(), server));
    drop(procs);
    let _ = std::fs::remove_dir_all(&store);
    result
}
