//! The daemon's observability over a real nats-server: `/metrics` passes `promtool check
//! metrics` and has unique series, the leadership gauges sum to 1, `/ready` reflects
//! leader/standby, `/health/checks` lists the checks, a bind failure stops the daemon, and
//! `cluster audit` reads the election and membership records back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, config, free_port, http_get, wait_for};
use serde_json::Value;

fn json(port: u16, path: &str) -> Option<(u16, Value)> {
    let (status, body) = http_get(port, path)?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// `promtool check metrics` on `text`: its exit code and output. Fails with an install hint
/// when promtool is missing.
fn promtool(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed ({e}): install it with `apt-get install prometheus`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the sample `name{labels…}` (labels given as `key="value"` substrings).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every (name, labels) of the exposition appears once (promtool does not check this).
fn assert_unique_series(text: &str) {
    let mut seen = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.rsplit_once(' ').unwrap().0.to_owned();
        assert!(seen.insert(series.clone()), "duplicate series {series}");
    }
}

fn node_config(base: &str, health: u16, metrics: u16) -> String {
    format!("health_addr = \"127.0.0.1:{health}\"\nmetrics_addr = \"127.0.0.1:{metrics}\"\n{base}")
}

#[test]
fn metrics_health_ready_and_audit_of_a_live_daemon() {
    let server = NatsServer::start();
    let dir = Scratch::new("observe");
    let base = config("obs", &server.url());
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let mut daemons = Vec::new();
    for (i, (h, m)) in ports.iter().enumerate() {
        let cfg = dir.file(&format!("n{}.toml", i + 1), &node_config(&base, *h, *m));
        daemons.push(Daemon::start(&cfg, &format!("n{}", i + 1), &dir.0));
    }
    // /ready on both nodes, one leader and one standby of `db`.
    let ready: Vec<Value> = wait_for(
        "both nodes ready, one db leader",
        Duration::from_secs(30),
        || {
            let r: Vec<Value> = ports
                .iter()
                .map(|(h, _)| {
                    json(*h, "/ready")
                        .filter(|(s, _)| *s == 200)
                        .map(|(_, v)| v)
                })
                .collect::<Option<_>>()?;
            let roles: BTreeSet<String> = r
                .iter()
                .map(|v| v["apps"]["db"]["role"].as_str().unwrap_or("").to_owned())
                .collect();
            (roles == BTreeSet::from(["leader".into(), "standby".into()])).then_some(r)
        },
    );
    for v in &ready {
        assert_eq!(v["ready"], true);
        assert_eq!(v["apps"]["web"]["role"], "active");
        assert_eq!(v["apps"]["db"]["settled"], true);
    }
    let leader_idx = ready
        .iter()
        .position(|v| v["apps"]["db"]["role"] == "leader")
        .unwrap();
    assert!(ready[leader_idx]["apps"]["db"]["epoch"].as_u64().unwrap() > 0);
    assert_eq!(
        ready[1 - leader_idx]["apps"]["db"]["leader"],
        format!("n{}", leader_idx + 1)
    );

    // Liveness and health.
    let (h, _) = ports[0];
    assert_eq!(json(h, "/live").unwrap().0, 200);
    let (status, health) = json(h, "/health").unwrap();
    assert_eq!(
        (status, &health["status"]),
        (200, &Value::from("ok")),
        "{health}"
    );
    let (status, checks) = json(h, "/health/checks").unwrap();
    assert_eq!(status, 200);
    let names: BTreeSet<&str> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "platform",
            "membership",
            "nats",
            "app:db",
            "leader:db",
            "app:web"
        ])
    );
    assert_eq!(http_get(h, "/nope").unwrap().0, 404);

    // Metrics: lint-clean, unique series, exactly one leader across the nodes.
    let texts: Vec<String> = ports
        .iter()
        .map(|(_, m)| {
            wait_for(
                "metrics with members and renewals",
                Duration::from_secs(20),
                || {
                    let (s, t) = http_get(*m, "/metrics")?;
                    (s == 200
                        && sample(&t, "gc_members", &["platform=\"obs\""]) == Some(2.0)
                        && t.contains("gc_election_seconds_since_renewal"))
                    .then_some(t)
                },
            )
        })
        .collect();
    for t in &texts {
        let (rc, out) = promtool(t);
        assert_eq!(rc, 0, "promtool check metrics failed:\n{out}\n---\n{t}");
        assert_unique_series(t);
        assert!(t.contains("# HELP gc_election_is_leader"), "{t}");
    }
    let leaders: f64 = texts
        .iter()
        .map(|t| sample(t, "gc_election_is_leader", &["app=\"db\""]).unwrap())
        .sum();
    assert_eq!(
        leaders, 1.0,
        "sum by (app) (gc_election_is_leader) must be 1"
    );
    assert!(
        sample(
            &texts[leader_idx],
            "gc_election_transitions_total",
            &["app=\"db\"", "reason=\"acquired\""]
        )
        .unwrap()
            >= 1.0
    );

    // Audit: the election and both joins are in the stream, readable by the CLI.
    let cfg = dir.0.join("n1.toml");
    let cfg = cfg.to_str().unwrap();
    let audit = wait_for("audit records", Duration::from_secs(10), || {
        let r = cli(&["--config", cfg, "--json", "audit", "--limit", "1000"]);
        (r.code == 0).then(|| r.json()).filter(|v| {
            let events: BTreeSet<String> = v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{}.{}",
                        e["category"].as_str().unwrap(),
                        e["action"].as_str().unwrap()
                    )
                })
                .collect();
            events.contains("election.acquired") && events.contains("member.join")
        })
    });
    assert_eq!(audit["truncated"], false);
    let r = cli(&[
        "--config",
        cfg,
        "--json",
        "audit",
        "--category",
        "member",
        "--limit",
        "1",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let page = r.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["truncated"], true);
    assert_eq!(page["entries"][0]["category"], "member");
    let r = cli(&["--config", cfg, "audit", "--app", "db", "--since", "1h"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("election.acquired"), "{}", r.stdout);

    // A step-down swaps the roles /ready reports (and the audit records it).
    let r = cli(&["--config", cfg, "--json", "stepdown", "--app", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    let new_leader = 1 - leader_idx;
    wait_for(
        "/ready shows the new leader",
        Duration::from_secs(20),
        || {
            let roles: Vec<String> = ports
                .iter()
                .map(|(h, _)| {
                    json(*h, "/ready")
                        .map(|(_, v)| v["apps"]["db"]["role"].as_str().unwrap_or("").to_owned())
                })
                .collect::<Option<_>>()?;
            (roles[new_leader] == "leader" && roles[leader_idx] == "standby").then_some(())
        },
    );
    wait_for("operator.stepdown audited", Duration::from_secs(10), || {
        let r = cli(&["--config", cfg, "--json", "audit", "--category", "operator"]);
        (r.code == 0 && r.stdout.contains("\"stepdown\"")).then_some(())
    });

    // Graceful stop: /ready goes away with the daemon.
    for d in &daemons {
        d.signal(libc::SIGTERM);
    }
    for d in &mut daemons {
        assert!(
            d.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            d.log_text()
        );
    }
}

#[test]
fn a_metrics_address_in_use_stops_the_daemon() {
    let server = NatsServer::start();
    let dir = Scratch::new("observe-bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.file(
        "n1.toml",
        &node_config(&config("obsbind", &server.url()), free_port(), port),
    );
    let mut d = Daemon::start(&cfg, "n1", &dir.0);
    let status = d.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the metrics server"
        )),
        "{log}"
    );
}

#[test]
fn a_second_daemon_with_the_same_config_fails_on_the_node_id_not_on_the_metrics_port() {
    let server = NatsServer::start();
    let dir = Scratch::new("observe-twice");
    let (health, metrics) = (free_port(), free_port());
    let cfg = dir.file(
        "n1.toml",
        &node_config(&config("obstwice", &server.url()), health, metrics),
    );
    let first = Daemon::start(&cfg, "n1", &dir.0);
    wait_for("the first daemon ready", Duration::from_secs(30), || {
        json(health, "/ready").filter(|(s, _)| *s == 200)
    });
    let second_dir = dir.0.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let mut second = Daemon::start(&cfg, "n1", &second_dir);
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = second.log_text();
    // Refused by the daemon's lock file on this host (or, on another host, by the live record).
    assert!(log.contains("node id n1 is already in use"), "{log}");
    assert!(!log.contains("cannot listen"), "{log}");
    // The first daemon keeps serving.
    assert_eq!(json(health, "/ready").map(|(s, _)| s), Some(200));
    assert!(http_get(metrics, "/metrics").is_some_and(|(s, _)| s == 200));
    drop(first);
}
