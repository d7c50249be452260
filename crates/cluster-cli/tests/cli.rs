//! The real `cluster` binary without NATS: configuration validation, dev mode, commands that
//! are not available yet, completions and version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Scratch, bin, cli, wait_for};

const BAD: &str = r#"
platform = "Prod_1"
colour = "blue"
[nats]
servers = ["localhost:4222"]
user = "u"
[election]
lease_ttl = "3s"
renew_interval = "2s"
safety_margin = 0.7
[[apps]]
name = "db"
mode = "singel"
[[apps]]
name = "db2"
mode = "singleton"
[apps.backend]
type = "process"
[[apps]]
name = "db2"
mode = "spread"
[[apps]]
name = "web"
mode = "spread"
[apps.placement]
on_label = { tier = 5 }
strategy = "random"
[apps.vip]
cidr = "198.51.100.10/33"
interface = "eth0"
"#;

#[test]
fn an_invalid_config_lists_every_problem_and_starts_nothing() {
    let dir = Scratch::new("bad");
    let cfg = dir.file("bad.toml", BAD);
    let cfg_s = cfg.to_str().unwrap();
    let r = cli(&["run", "--config", cfg_s, "--node", "n1"]);
    assert_eq!(r.code, 4, "{r:?}");
    let expected = [
        "bad.toml: platform: ",
        "bad.toml: colour: unknown key",
        "bad.toml: nats.servers[0]: \"localhost:4222\" is not a NATS URL",
        "bad.toml: nats.user: user and password must be given together",
        "bad.toml: election.renew_interval: 2s must be > 0 and at most a third of lease_ttl (3s)",
        "bad.toml: election.safety_margin: 0.7 must be between 0 and 0.5",
        "bad.toml: apps[0].mode: unknown mode \"singel\"",
        "bad.toml: apps[1].backend.command: a process backend needs a command",
        "bad.toml: apps[2].name: app db2 is declared twice",
        "bad.toml: apps[3].placement.on_label.tier: must be a string",
        "bad.toml: apps[3].placement.strategy: unknown strategy \"random\"",
        "bad.toml: apps[3].vip: ",
        "bad.toml: apps[3].vip: a VIP is held by one leader",
        "nothing was started",
    ];
    for e in expected {
        assert!(r.stderr.contains(e), "missing {e:?} in:\n{}", r.stderr);
    }
    assert!(
        r.stderr.contains("invalid configuration (13 problems)"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    // `check` gives the same problems; --json gives them as a JSON error.
    let r = cli(&["check", "--config", cfg_s, "--json"]);
    assert_eq!(r.code, 4);
    let v = r.json();
    assert_eq!(v["error"]["kind"], "invalid");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("apps[2].name")
    );
    // A TOML syntax error names the line.
    let cfg = dir.file("syntax.toml", "platform = \"x\"\n[nats\n");
    let r = cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 4);
    assert!(
        r.stderr.contains("not valid TOML") && r.stderr.contains("line 2"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cluster.toml");
    let r = cli(&["check", "--config", example]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("valid (platform demo"), "{}", r.stdout);
    let compose = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/compose/cluster.toml"
    );
    let r = cli(&["check", "--config", compose]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("valid (platform compose"), "{}", r.stdout);
}

#[test]
fn dev_mode_starts_answers_status_and_stops_on_sigterm() {
    let dir = Scratch::new("dev");
    let socket = dir.0.join("dev.sock");
    let socket_s = socket.to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--dev", "--dev-socket", socket_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let v = wait_for("dev status", Duration::from_secs(20), || {
        let r = cli(&["--dev", "--dev-socket", socket_s, "--json", "status"]);
        (r.code == 0 && r.json()["members"].as_array().map(Vec::len) == Some(3)).then(|| r.json())
    });
    assert_eq!(v["members"][0]["node"], "dev-1", "{v}");
    let dev = |args: &[&str]| {
        let mut all = vec!["--dev", "--dev-socket", socket_s];
        all.extend_from_slice(args);
        cli(&all)
    };
    let leader_of = |v: &serde_json::Value| v["app"]["leader"].as_str().map(str::to_owned);
    let leader = wait_for("dev leader", Duration::from_secs(10), || {
        leader_of(&dev(&["--json", "app", "status", "scheduler"]).json())
    });
    assert!(leader.starts_with("dev-"), "{leader}");
    let r = dev(&["status"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains("APP        MODE       LEADER  EPOCH  INSTANCES\nscheduler  singleton  dev-"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("shards     ring(12)"), "{}", r.stdout);
    // A crash of the leader: another node leads within the lease time; then it comes back.
    let r = dev(&["kill", &leader]);
    assert_eq!(r.code, 0, "{r:?}");
    let next = wait_for("failover", Duration::from_secs(20), || {
        leader_of(&dev(&["--json", "app", "status", "scheduler"]).json()).filter(|l| *l != leader)
    });
    assert_ne!(next, leader);
    assert_eq!(dev(&["kill", &leader]).code, 4, "already crashed");
    assert_eq!(dev(&["kill", "dev-9"]).code, 3, "unknown node");
    let r = dev(&["restart", &leader]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_for("three members again", Duration::from_secs(20), || {
        let v = dev(&["--json", "status"]).json();
        (v["members"].as_array().map(Vec::len) == Some(3)).then_some(())
    });
    assert_eq!(cli(&["kill", "dev-1"]).code, 4, "kill needs --dev");
    // SAFETY: kill(2) on our own child with SIGTERM.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = wait_for("dev daemon exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("to go multi-node"), "{out}");
    assert!(!socket.exists(), "the socket is removed on exit");
    // Without a dev daemon: a hint.
    let r = cli(&["--dev", "--dev-socket", socket_s, "status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cluster run --dev"), "{}", r.stderr);
}

#[test]
fn commands_that_are_not_available_exit_2_and_change_nothing() {
    let cases: &[&[&str]] = &[
        &["services", "list"],
        &["services", "export", "--format", "consul"],
        &["leaf", "ping", "eu"],
    ];
    for args in cases {
        let r = cli(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("is not available yet") && r.stderr.contains("Nothing was changed"),
            "{}",
            r.stderr
        );
    }
    let r = cli(&["--json", "services", "list"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["kind"], "not_available");
}

#[test]
fn usage_errors_completions_and_version() {
    let r = cli(&["node", "frobnicate"]);
    assert_eq!(r.code, 4, "{r:?}");
    let r = cli(&["completions", "bash"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("_cluster()") && r.stdout.contains("stepdown"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    let r = cli(&["--json", "version"]);
    assert_eq!(r.code, 0);
    let v = r.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["protocol"], 1);
    let r = cli(&[
        "--node",
        "Not.Valid",
        "--platform",
        "x",
        "--nats",
        "nats://127.0.0.1:1",
        "--timeout",
        "1s",
        "stepdown",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("pass --node") || r.stderr.contains("--node"),
        "{}",
        r.stderr
    );
}

#[test]
fn sqlite_config_problems_are_listed() {
    let dir = Scratch::new("badsqlite");
    let cfg = dir.file(
        "bad.toml",
        r#"platform = "p"
[[apps]]
name = "web"
mode = "spread"
[apps.sqlite]
path = "/tmp/x.db"
[[apps]]
name = "db"
mode = "singleton"
[apps.sqlite]
durability = "commit-wait"
retention_count = 0
colour = 1
[apps.backend]
type = "process"
command = "true"
[[apps]]
name = "db3"
mode = "singleton"
[apps.sqlite]
path = "/tmp/y.db"
durability = "eventually"
"#,
    );
    let r = cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{r:?}");
    for e in [
        "apps[0].sqlite: SQLite replication has one writer",
        "apps[1].sqlite.path: give the database file",
        "apps[1].sqlite.durability: commit-wait needs an in-process writer",
        "apps[1].sqlite.retention_count: 0 is out of range",
        "apps[1].sqlite.colour: unknown key",
        "apps[2].sqlite.durability: unknown durability \"eventually\"",
    ] {
        assert!(r.stderr.contains(e), "missing {e:?} in:\n{}", r.stderr);
    }
}

/// A docker backend's `extra_args` are `docker run` options checked when the configuration
/// is loaded: supported ones pass, anything else is a problem naming it.
#[test]
fn docker_extra_args_are_checked_at_load() {
    let dir = Scratch::new("dockerargs");
    let config = |args: &str| {
        format!(
            r#"platform = "p"
[[apps]]
name = "web"
mode = "singleton"
[apps.backend]
type = "docker"
image = "localhost/web:1"
extra_args = {args}
"#
        )
    };
    let good = dir.file(
        "good.toml",
        &config(r#"["-e", "A=1", "--cap-add", "NET_ADMIN", "--memory=64m", "--cpus", "0.5"]"#),
    );
    let r = cli(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let bad = dir.file("bad.toml", &config(r#"["--privileged", "-e", "A=1"]"#));
    let r = cli(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{r:?}");
    for e in [
        "bad.toml: apps[0].backend.extra_args: ",
        "unsupported option \"--privileged\"",
    ] {
        assert!(r.stderr.contains(e), "missing {e:?} in:\n{}", r.stderr);
    }
}

/// `cluster version | true`, `cluster status | head -1`: an admin command whose output pipe is
/// closed ends quietly (killed by SIGPIPE, as Unix tools are) instead of panicking (exit 101).
#[test]
fn a_closed_output_pipe_ends_an_admin_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["version"][..], &["--json", "version"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before the command writes
        let out = Command::new(bin())
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// Flags are validated before any connection: a zero or malformed timeout and a URL that is not
/// a NATS URL are usage errors (exit 4) naming the flag, not "cannot connect to NATS".
#[test]
fn invalid_flags_are_refused_before_connecting() {
    for (args, expected) in [
        (&["--timeout", "0s", "status"][..], "--timeout"),
        (&["--timeout", "30", "status"][..], "needs a unit"),
        (
            &["--timeout", "99999999999999999999999d", "status"][..],
            "too long",
        ),
        (&["--nats", "bogus://x", "status"][..], "--nats"),
        (
            &["--nats", "127.0.0.1:4222", "status"][..],
            "is not a NATS URL",
        ),
    ] {
        let r = cli(args);
        assert_eq!(r.code, 4, "{args:?}: {r:?}");
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.stderr);
        assert!(
            !r.stderr.contains("cannot connect"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// A dev platform (3 nodes) with a Singleton, a Ring app and an app no node is eligible for.
const APPS: &str = r#"
platform = "apps"
[election]
lease_ttl = "2s"
renew_interval = "500ms"
[[apps]]
name = "sched"
mode = "singleton"
[[apps]]
name = "shards"
mode = "ring"
partitions = 12
[[apps]]
name = "pinned"
mode = "singleton"
[apps.placement]
on_label = { zone = "nowhere" }
"#;

#[test]
fn app_list_shows_where_apps_run_and_app_status_the_pending_reason_and_partitions() {
    let dir = Scratch::new("apps");
    let config = dir.file("apps.toml", APPS);
    let socket = dir.0.join("dev.sock");
    let socket_s = socket.to_str().unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--dev", "--dev-socket", socket_s, "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev = |args: &[&str]| {
        let mut all = vec!["--dev", "--dev-socket", socket_s, "--platform", "apps"];
        all.extend_from_slice(args);
        cli(&all)
    };
    // Every node declares every app; the list shows only where instances run, with roles.
    let list = wait_for("apps placed", Duration::from_secs(30), || {
        let v = dev(&["--json", "app", "list"]).json();
        let app = |name: &str| {
            v["apps"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == name)
                .cloned()
        };
        let (sched, shards, pinned) = (app("sched")?, app("shards")?, app("pinned")?);
        let placed = sched["instances"].as_array()?.len() == 3
            && shards["nodes"].as_array()?.len() == 3
            && pinned["pending"].is_string();
        placed.then_some(v)
    });
    let pinned = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "pinned")
        .unwrap();
    assert_eq!(pinned["nodes"], serde_json::json!([]), "{pinned}");
    assert_eq!(pinned["instances"], serde_json::json!([]), "{pinned}");
    let reason = pinned["pending"].as_str().unwrap();
    assert!(reason.contains("zone=nowhere"), "{reason}");
    let sched = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "sched")
        .unwrap();
    let roles: Vec<&str> = sched["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{sched}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "standby").count(),
        2,
        "{sched}"
    );
    let table = dev(&["app", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("RUNNING ON"), "{}", table.stdout);
    assert!(table.stdout.contains("(leader)"), "{}", table.stdout);
    assert!(table.stdout.contains("- (pending: "), "{}", table.stdout);

    // A pending app's status says why.
    let st = dev(&["--json", "app", "status", "pinned"]);
    assert_eq!(st.code, 0, "{st:?}");
    assert!(
        st.json()["pending"]
            .as_str()
            .unwrap()
            .contains("zone=nowhere"),
        "{}",
        st.stdout
    );
    let st = dev(&["app", "status", "pinned"]);
    assert!(st.stdout.contains("\npending: "), "{}", st.stdout);

    // A Ring app's status counts partitions per node; --partitions prints the map.
    let st = dev(&["--json", "app", "status", "shards"]).json();
    let counts = st["partition_counts"].as_object().unwrap();
    assert_eq!(counts.len(), 3, "{st}");
    assert_eq!(
        counts.values().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        12,
        "{st}"
    );
    assert!(
        st.get("partitions").is_none(),
        "the map only with --partitions"
    );
    let st = dev(&["--json", "app", "status", "shards", "--partitions"]).json();
    assert_eq!(st["partitions"].as_array().unwrap().len(), 12, "{st}");
    let st = dev(&["app", "status", "shards", "--partitions"]);
    assert!(st.stdout.contains("PARTITIONS"), "{}", st.stdout);
    assert!(st.stdout.contains("PARTITION  NODE\n0 "), "{}", st.stdout);

    // SAFETY: kill(2) on our own child with SIGTERM.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    wait_for("dev daemon exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
}
