//! The real `cluster` binary against a real nats-server and real daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, config, wait_for};
use serde_json::Value;

/// `cluster status --json` once it shows `members` members and a leader of `db`.
fn status_with(cfg: &str, members: usize, not_leader: Option<&str>) -> Value {
    wait_for(
        &format!("status with {members} members and a db leader other than {not_leader:?}"),
        Duration::from_secs(20),
        || {
            let r = cli(&["--config", cfg, "--json", "status"]);
            if r.code != 0 {
                return None;
            }
            let v = r.json();
            let db = v["apps"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "db")?
                .clone();
            let leader = db["leader"].as_str()?;
            let ok = v["members"].as_array()?.len() == members
                && v["nodes"].as_array()?.len() == members
                && Some(leader) != not_leader
                && db["instances"]
                    .as_array()?
                    .iter()
                    .filter(|i| i["role"] == "leader")
                    .count()
                    == 1;
            ok.then_some(v)
        },
    )
}

fn db(v: &Value) -> &Value {
    v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "db")
        .unwrap()
}

#[test]
fn three_daemons_status_stepdown_unknown_names_and_sigterm() {
    let server = NatsServer::start();
    let dir = Scratch::new("three");
    let cfg = dir.file("cluster.toml", &config("e2e", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Daemon::start(&cfg, n, &dir.0))
        .collect();

    // Status: leader, epoch and members.
    let v = status_with(cfg_s, 3, None);
    assert_eq!(v["v"], 1);
    assert_eq!(v["platform"], "e2e");
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["n1", "n2", "n3"]);
    let first = db(&v)["leader"].as_str().unwrap().to_owned();
    let epoch1 = db(&v)["epoch"].as_u64().unwrap();
    assert!(epoch1 > 0);
    assert_eq!(db(&v)["mode"]["kind"], "singleton");
    let web = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "web")
        .unwrap();
    assert_eq!(web["instances"].as_array().unwrap().len(), 3);
    assert!(
        web["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["role"] == "active")
    );

    // Human output: aligned tables.
    let r = cli(&["--config", cfg_s, "app", "status", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("app db (singleton)\nleader: "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\nNODE  ROLE     EPOCH  HEALTH\n"),
        "{}",
        r.stdout
    );
    let r = cli(&["--config", cfg_s, "node", "list"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);

    // Step-down moves leadership to another node with a newer epoch.
    let r = cli(&["--config", cfg_s, "--json", "stepdown", "--app", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    let s = r.json();
    assert_eq!(s["previous"]["node"], first.as_str());
    let second = s["leader"]["node"]
        .as_str()
        .expect("a new leader")
        .to_owned();
    assert_ne!(second, first);
    assert!(s["leader"]["epoch"].as_u64().unwrap() > epoch1);

    // Unknown app and node: clear errors, exit 3.
    let r = cli(&["--config", cfg_s, "app", "status", "nope"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("unknown app nope") && r.stderr.contains("known apps: db, web"),
        "{}",
        r.stderr
    );
    let r = cli(&["--config", cfg_s, "node", "status", "n9"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("node n9 not found") && r.stderr.contains("live nodes: n1, n2, n3"),
        "{}",
        r.stderr
    );
    let r = cli(&["--config", cfg_s, "--json", "stepdown", "--app", "nope"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["error"]["kind"], "not_found");
    let r = cli(&["--config", cfg_s, "--json", "node", "status", "n2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["node"], "n2");

    // SIGTERM of the leader: graceful exit, another node takes over quickly.
    let idx = daemons.iter().position(|d| d.node == second).unwrap();
    let t0 = Instant::now();
    daemons[idx].signal(libc::SIGTERM);
    let status = daemons[idx].wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        daemons[idx].log_text()
    );
    let v = status_with(cfg_s, 2, Some(&second));
    let third = db(&v)["leader"].as_str().unwrap().to_owned();
    println!(
        "takeover after SIGTERM of {second}: {third} leads (seen by the CLI {:?} after the signal)",
        t0.elapsed()
    );
    assert!(db(&v)["epoch"].as_u64().unwrap() > s["leader"]["epoch"].as_u64().unwrap());

    // `health` is green with two nodes; all daemons stop gracefully.
    let r = cli(&["--config", cfg_s, "health"]);
    assert_eq!(r.code, 0, "{r:?}");
    for d in daemons.iter_mut().filter(|d| d.node != second) {
        d.signal(libc::SIGTERM);
        assert!(d.wait_exit(Duration::from_secs(20)).success());
    }
}

#[test]
fn sigkill_of_the_leader_daemon_fails_over() {
    let server = NatsServer::start();
    let dir = Scratch::new("kill");
    let cfg = dir.file("cluster.toml", &config("kill", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons: Vec<Daemon> = ["a1", "a2"]
        .iter()
        .map(|n| Daemon::start(&cfg, n, &dir.0))
        .collect();
    let v = status_with(cfg_s, 2, None);
    let leader = db(&v)["leader"].as_str().unwrap().to_owned();
    let idx = daemons.iter().position(|d| d.node == leader).unwrap();
    daemons[idx].signal(libc::SIGKILL);
    daemons[idx].wait_exit(Duration::from_secs(5));
    let v = status_with(cfg_s, 1, Some(&leader));
    assert_ne!(db(&v)["leader"].as_str().unwrap(), leader);
}

#[test]
fn no_daemon_or_no_nats_gives_a_hint() {
    let server = NatsServer::start();
    let r = cli(&["--nats", &server.url(), "--platform", "empty", "status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("no node of platform empty answered"),
        "{}",
        r.stderr
    );
    drop(server);
    let r = cli(&["--nats", "nats://127.0.0.1:1", "--timeout", "1s", "status"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot connect to NATS"), "{}", r.stderr);
}
