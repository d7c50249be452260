//! The shipped unit (packaging/cluster.service) under a real systemd user manager
//! (cluster-testkit's `systemd_user`) with a real nats-server: readiness, the watchdog, a
//! graceful stop, and a missing configuration file at the conventional path.
//!
//! The test's drop-in changes only what a user manager or a test needs: no `User=` (a user
//! manager runs units as itself), the binary under test instead of /usr/bin/cluster, a node
//! id, a 3 s watchdog instead of 30 s, the output in a file (there is no journal), and three
//! options this container cannot apply (the start fails with 226/NAMESPACE): `ProtectHome`,
//! `ProtectKernelTunables`, `ProtectKernelLogs`. Every other hardening option of the unit is
//! applied as shipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use cluster_testkit::systemd_user::UserManager;
use common::{Daemon, bin, cli};

const UNIT: &str = "cluster.service";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const WATCHDOG: Duration = Duration::from_secs(3);
const ABORT: Duration = Duration::from_secs(2);
/// The membership TTL: a restarted node waits for its crashed incarnation's record to expire
/// (`NodeIdInUse`), a graceful leave deletes the record at once.
const TTL: Duration = Duration::from_secs(10);

fn shipped_unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/cluster.service");
    std::fs::read_to_string(&path).unwrap()
}

/// Installs the shipped unit, the test drop-in and a copy of the binary (outside /tmp:
/// the unit has `PrivateTmp=yes`).
async fn install(m: &UserManager, node: &str) -> PathBuf {
    let copy = m.dir().join("cluster");
    std::fs::copy(bin(), &copy).unwrap();
    let log = m.dir().join("daemon.log");
    std::fs::write(m.unit_dir().join(UNIT), shipped_unit()).unwrap();
    let dropin = m.unit_dir().join(format!("{UNIT}.d"));
    std::fs::create_dir_all(&dropin).unwrap();
    let shipped_exec = shipped_unit()
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap()
        .to_owned();
    let exec = shipped_exec.replace("/usr/bin/cluster", copy.to_str().unwrap());
    assert_ne!(exec, shipped_exec, "the shipped unit runs /usr/bin/cluster");
    std::fs::write(
        dropin.join("test.conf"),
        format!(
            "[Service]\nUser=\nGroup=\nExecStart=\n{exec}\nEnvironment=CLUSTER_NODE={node} \
             RUST_LOG=info\nWatchdogSec={}\nTimeoutAbortSec={}\n\
             StandardOutput=append:{log}\nStandardError=append:{log}\n\
             ProtectHome=no\nProtectKernelTunables=no\nProtectKernelLogs=no\n",
            WATCHDOG.as_secs(),
            ABORT.as_secs(),
            log = log.display()
        ),
    )
    .unwrap();
    m.reload().await;
    log
}

/// Where the unit reads its configuration: `%E/cluster/cluster.toml`, %E being
/// `$XDG_CONFIG_HOME` for a user manager (/etc for the system manager).
fn conventional_config(m: &UserManager) -> PathBuf {
    m.dir().join("cfg/cluster/cluster.toml")
}

async fn state(m: &UserManager) -> (String, String, u32) {
    (
        m.string_property(UNIT, UNIT_IFACE, "ActiveState")
            .await
            .unwrap_or_default(),
        m.string_property(UNIT, SERVICE, "StatusText")
            .await
            .unwrap_or_default(),
        m.u32_property(UNIT, SERVICE, "MainPID").await.unwrap_or(0),
    )
}

async fn wait_state(
    m: &UserManager,
    what: &str,
    within: Duration,
    want: impl Fn(&(String, String, u32)) -> bool,
    log: &Path,
) -> (String, String, u32) {
    let deadline = Instant::now() + within;
    loop {
        let s = state(m).await;
        if want(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}; last {s:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The db leader and its epoch according to `cluster status`.
fn db_leader(cfg: &str) -> Option<(String, u64)> {
    let r = cli(&["--config", cfg, "--json", "status"]);
    if r.code != 0 {
        return None;
    }
    let v = r.json();
    let db = v["apps"].as_array()?.iter().find(|a| a["name"] == "db")?;
    Some((db["leader"].as_str()?.to_owned(), db["epoch"].as_u64()?))
}

fn members(cfg: &str) -> Option<Vec<String>> {
    let r = cli(&["--config", cfg, "--json", "status"]);
    if r.code != 0 {
        return None;
    }
    Some(
        r.json()["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["node"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_unit_is_ready_after_start_restarted_by_the_watchdog_and_stops_gracefully() {
    let server = NatsServer::start();
    // Outside /tmp: the unit's PrivateTmp=yes hides it from the service.
    let base = PathBuf::from("/var/lib/cluster-tests");
    std::fs::create_dir_all(&base).unwrap();
    let m = std::sync::Arc::new(UserManager::start_in(&base, "unit").await);
    let log = install(&m, "sd1").await;

    // 1. No configuration at the conventional path: the start fails, the error names the file,
    // and exit status 4 (usage) is not restarted in a loop.
    let cfg_path = conventional_config(&m);
    m.manager_call("StartUnit", &(UNIT, "replace"))
        .await
        .unwrap();
    wait_state(
        &m,
        "failed without configuration",
        Duration::from_secs(20),
        |s| s.0 == "failed",
        &log,
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("{}: no such file", cfg_path.display())),
        "the error names {}:\n{text}",
        cfg_path.display()
    );
    assert_eq!(m.u32_property(UNIT, SERVICE, "NRestarts").await, Some(0));
    m.manager_call("ResetFailedUnit", &(UNIT,)).await.unwrap();

    // 2. READY: `active` only once the node runs and its apps have roles. A plain daemon n2
    // joins afterwards so that sd1 leads db.
    std::fs::create_dir_all(cfg_path.parent().unwrap()).unwrap();
    let config = common::config("sdunit", &server.url())
        .replace("ttl = \"3s\"", &format!("ttl = \"{}s\"", TTL.as_secs()));
    std::fs::write(&cfg_path, &config).unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let started = Instant::now();
    m.manager_call("StartUnit", &(UNIT, "replace"))
        .await
        .unwrap();
    let mut seen_activating = false;
    let ready = loop {
        let s = state(&m).await;
        match s.0.as_str() {
            "activating" => seen_activating = true,
            "active" => break s,
            "failed" => panic!(
                "the unit failed: {}",
                std::fs::read_to_string(&log).unwrap()
            ),
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not active within 60 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let ready_at = Instant::now();
    println!("active after {:?}: {ready:?}", started.elapsed());
    assert!(seen_activating, "the unit was `activating` until READY=1");
    assert!(
        ready.1.contains("db") && ready.1.contains("web"),
        "READY=1 came with a STATUS= of the apps' roles: {:?}",
        ready.1
    );
    let sd1_pid = ready.2;
    assert!(
        members(cfg).is_some_and(|m| m == ["sd1"]),
        "sd1 joined when it said READY"
    );
    let status = wait_state(
        &m,
        "STATUS=leader of db",
        Duration::from_secs(20),
        |s| s.1.contains("leader of db"),
        &log,
    )
    .await;
    println!("status: {:?}", status.1);
    let dir = common::Scratch::new("sd-n2");
    let n2 = Daemon::start(&cfg_path, "n2", &dir.0);
    common::wait_for("n2 joined", Duration::from_secs(20), || {
        members(cfg).filter(|m| m.len() == 2)
    });
    let (leader, epoch) = db_leader(cfg).unwrap();
    assert_eq!(leader, "sd1");

    // 3. SIGSTOP: the watchdog goes unpetted; systemd aborts the daemon and restarts it, while
    // n2 takes db over with a newer epoch.
    // The daemon pets the watchdog: it outlived two WatchdogSec periods since READY.
    let since_ready = ready_at.elapsed();
    if since_ready < WATCHDOG * 2 {
        tokio::time::sleep(WATCHDOG * 2 - since_ready).await;
    }
    assert_eq!(
        m.u32_property(UNIT, SERVICE, "MainPID").await,
        Some(sd1_pid),
        "the daemon was not restarted while it ran normally; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let sampler = {
        let m = m.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            while m.u32_property(UNIT, SERVICE, "MainPID").await == Some(sd1_pid) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            t0.elapsed()
        })
    };
    m.kill_unit(UNIT, libc::SIGSTOP).await;
    let stopped = Instant::now();
    let moved = common::wait_for("n2 leads db", Duration::from_secs(30), || {
        db_leader(cfg).filter(|(l, _)| l == "n2")
    });
    println!(
        "n2 leads db {:?} after SIGSTOP: {moved:?}",
        stopped.elapsed()
    );
    assert!(moved.1 > epoch, "a new term: {moved:?} after epoch {epoch}");
    let restarted = wait_state(
        &m,
        "restarted by the watchdog",
        WATCHDOG + ABORT + Duration::from_secs(30),
        |s| s.0 == "active" && s.2 != 0 && s.2 != sd1_pid,
        &log,
    )
    .await;
    let killed = sampler.await.unwrap();
    println!(
        "watchdog: the stopped daemon was gone {killed:?} after SIGSTOP, active again after \
         {:?} (the new incarnation waits for the old member record's {TTL:?} TTL); {restarted:?}",
        stopped.elapsed()
    );
    assert!(
        killed <= WATCHDOG + ABORT + Duration::from_secs(2),
        "killed within WatchdogSec + TimeoutAbortSec (+2 s polling slack): {killed:?}"
    );
    assert!(m.u32_property(UNIT, SERVICE, "NRestarts").await >= Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.matches("told systemd the node is ready").count() >= 2,
        "the restarted daemon announced READY again:\n{text}"
    );

    // 4. SIGKILL: Restart=on-failure brings the node back (after its old member record
    // expired: until then the new incarnation is refused with NodeIdInUse and retried).
    common::wait_for("sd1 back", Duration::from_secs(20), || {
        members(cfg).filter(|m| m.len() == 2)
    });
    let before = restarted.2;
    m.kill_unit(UNIT, libc::SIGKILL).await;
    let killed_at = Instant::now();
    let back = wait_state(
        &m,
        "restarted after SIGKILL",
        TTL + Duration::from_secs(30),
        |s| s.0 == "active" && s.2 != 0 && s.2 != before,
        &log,
    )
    .await;
    println!(
        "SIGKILL: active again after {:?} (membership TTL {TTL:?}); {back:?}",
        killed_at.elapsed()
    );

    // 5. `systemctl stop`: a graceful leave (the member record is deleted, not left to expire
    // after the TTL), ending `inactive` with exit status 0 rather than `failed`.
    common::wait_for("sd1 back", Duration::from_secs(20), || {
        members(cfg).filter(|m| m.len() == 2)
    });
    let stop = Instant::now();
    m.manager_call("StopUnit", &(UNIT, "replace"))
        .await
        .unwrap();
    wait_state(
        &m,
        "inactive after stop",
        Duration::from_secs(60),
        |s| s.0 == "inactive",
        &log,
    )
    .await;
    let took = stop.elapsed();
    println!("stop took {took:?}");
    assert!(
        took < TTL,
        "the stop ended before a TTL could expire the record: {took:?}"
    );
    assert_eq!(members(cfg).unwrap(), ["n2"], "sd1 left at once");
    assert_eq!(
        m.string_property(UNIT, SERVICE, "Result").await.as_deref(),
        Some("success"),
        "exit status 0"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("shutting down gracefully") && text.contains("stopped"),
        "the daemon took the graceful path:\n{text}"
    );
    drop(n2);
}
