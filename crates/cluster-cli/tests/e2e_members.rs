//! Self-healing membership with real daemons on a real nats-server; the members bucket is
//! written directly with a raw async-nats client, as a buggy tool or an attacker would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, config, wait_for};

/// The member TTL of `common::config`.
const MEMBER_TTL: Duration = Duration::from_secs(3);

/// A raw JetStream KV handle on the platform's members bucket.
struct Raw {
    rt: tokio::runtime::Runtime,
    kv: async_nats::jetstream::kv::Store,
}

impl Raw {
    fn open(url: &str, platform: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let kv = rt.block_on(async {
            let client = async_nats::connect(url).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.get_key_value(format!("{platform}_members"))
                .await
                .unwrap()
        });
        Self { rt, kv }
    }

    fn put(&self, key: &str, value: &[u8]) {
        self.rt
            .block_on(self.kv.put(key, value.to_vec().into()))
            .unwrap();
    }

    fn delete(&self, key: &str) {
        self.rt.block_on(self.kv.delete(key)).unwrap();
    }

    fn purge(&self, key: &str) {
        self.rt.block_on(self.kv.purge(key)).unwrap();
    }

    fn get(&self, key: &str) -> Option<serde_json::Value> {
        let bytes = self.rt.block_on(self.kv.get(key)).unwrap()?;
        Some(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// The instance named by `key`'s record (`None`: no record or not decodable).
    fn instance(&self, key: &str) -> Option<String> {
        self.get(key)?["instance"].as_str().map(str::to_owned)
    }
}

fn forged(node: &str, platform: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "node": node, "platform": platform, "instance": "forged", "address": "",
        "labels": {}, "apps": [{"name": "web", "mode": {"kind": "spread"}, "running": true,
        "role": "active"}, {"name": "db", "mode": {"kind": "singleton"}, "running": true,
        "role": "leader"}], "healthy": true, "joined_at_ms": 0, "last_seen_ms": 0,
    }))
    .unwrap()
}

fn members(cfg: &str) -> Option<Vec<String>> {
    let r = cli(&["--config", cfg, "--json", "status"]);
    if r.code != 0 {
        return None;
    }
    let v = r.json();
    Some(
        v["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["node"].as_str().map(str::to_owned))
            .collect(),
    )
}

fn alive(d: &mut Daemon) -> bool {
    d.child.try_wait().unwrap().is_none()
}

fn started(d: &Daemon) -> bool {
    d.log_text().contains("is running; stop with")
}

fn stats(what: &str, xs: &[Duration]) -> String {
    let mut v: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    format!(
        "{what}: n={} min={:.0}ms median={:.0}ms max={:.0}ms",
        v.len(),
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

#[test]
fn garbage_over_a_member_record_heals_a_forged_member_is_removed_and_node_remove_judges() {
    let server = NatsServer::start();
    let dir = Scratch::new("members");
    let cfg = dir.file("cluster.toml", &config("memb", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Daemon::start(&cfg, n, &dir.0))
        .collect();
    wait_for("3 members", Duration::from_secs(30), || {
        members(cfg_s).filter(|m| m.len() == 3)
    });
    let raw = Raw::open(&server.url(), "memb");
    let n2 = raw.instance("n2").unwrap();

    // Garbage over n2's record (and a delete, and a purge): n2 rewrites it and keeps running.
    let mut heal = Vec::new();
    for round in 0..7 {
        match round {
            5 => raw.delete("n2"),
            6 => raw.purge("n2"),
            _ => raw.put("n2", b"\x00 not json"),
        }
        let t = Instant::now();
        while raw.instance("n2").as_deref() != Some(n2.as_str()) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "n2 did not rewrite its record"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        heal.push(t.elapsed());
        assert!(
            alive(&mut daemons[1]),
            "n2 exited:\n{}",
            daemons[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    eprintln!(
        "{}",
        stats(
            "garbage ×5, delete, purge of n2's record → rewritten",
            &heal
        )
    );

    // A forged, well-formed member without TTL (apps "running" as leader): never shown, never
    // placed, health stays fine, and it is removed within the member TTL.
    let t = Instant::now();
    raw.put("n9", &forged("n9", "memb"));
    let mut samples = 0;
    while raw.get("n9").is_some() {
        assert!(t.elapsed() < MEMBER_TTL * 3, "n9 not removed");
        let st = cli(&["--config", cfg_s, "--timeout", "1s", "--json", "status"]);
        assert!(!st.stdout.contains("\"n9\""), "n9 shown: {}", st.stdout);
        let pl = cli(&["--config", cfg_s, "--timeout", "1s", "--json", "placement"]);
        assert!(!pl.stdout.contains("\"n9\""), "n9 placed: {}", pl.stdout);
        let h = cli(&["--config", cfg_s, "--timeout", "1s", "health"]);
        assert_eq!(h.code, 0, "{h:?}");
        samples += 1;
    }
    let removed = t.elapsed();
    eprintln!(
        "forged n9 (no TTL) removed from the bucket after {removed:?} ({samples} status/placement/health samples, none showed it)"
    );
    assert!(
        removed >= MEMBER_TTL - Duration::from_millis(200),
        "{removed:?}"
    );
    let m = members(cfg_s).unwrap();
    assert!(!m.contains(&"n9".to_owned()), "{m:?}");
    let h = cli(&["--config", cfg_s, "health"]);
    assert_eq!(h.code, 0, "{h:?}");

    // `node remove`: a record never renewed is removed on request, a live node is refused.
    raw.put("n8", &forged("n8", "memb"));
    let t = Instant::now();
    // (A short --timeout: the status broadcast that picks the judge waits for n8 too.)
    let r = cli(&[
        "--config",
        cfg_s,
        "--timeout",
        "500ms",
        "--json",
        "node",
        "remove",
        "n8",
    ]);
    eprintln!("node remove n8 took {:?}", t.elapsed());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["removed"], true);
    assert_eq!(r.json()["instance"], "forged");
    assert!(raw.get("n8").is_none());
    let r = cli(&["--config", cfg_s, "node", "remove", "n2"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("node n2 is live"), "{}", r.stderr);
    let r = cli(&["--config", cfg_s, "node", "remove", "n7"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(raw.instance("n2").as_deref(), Some(n2.as_str()));

    // The audit log has the removal.
    let a = cli(&[
        "--config",
        cfg_s,
        "--json",
        "audit",
        "--category",
        "operator",
    ]);
    assert!(a.stdout.contains("node.remove"), "{a:?}");

    // n2 restarts normally (graceful stop, then at once).
    daemons[1].signal(libc::SIGTERM);
    assert!(daemons[1].wait_exit(Duration::from_secs(20)).success());
    daemons[1] = Daemon::start(&cfg, "n2", &dir.0);
    wait_for("n2 back", Duration::from_secs(20), || {
        members(cfg_s).filter(|m| m.len() == 3)
    });
    for d in &mut daemons {
        assert!(alive(d), "{} exited:\n{}", d.node, d.log_text());
    }
}

/// Starts `n1` and waits until it runs; returns the time from spawn to "running".
fn start_timed(cfg: &Path, dir: &Path) -> (Daemon, Duration) {
    let t = Instant::now();
    let mut d = Daemon::start(cfg, "n1", dir);
    while !started(&d) {
        assert!(alive(&mut d), "n1 exited:\n{}", d.log_text());
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "n1 did not start:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (d, t.elapsed())
}

#[test]
fn a_daemon_killed_and_restarted_at_once_on_the_same_host_starts_at_once() {
    let server = NatsServer::start();
    let dir = Scratch::new("restart");
    let cfg = dir.file("cluster.toml", &config("rst", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let _n2 = Daemon::start(&cfg, "n2", &dir.0);
    let (mut d, first) = start_timed(&cfg, &dir.0);
    wait_for("2 members", Duration::from_secs(20), || {
        members(cfg_s).filter(|m| m.len() == 2)
    });

    // A second daemon with the same id on this host while the first lives: refused at once.
    let t = Instant::now();
    let mut twin = Daemon::start(&cfg, "n1", &dir.0);
    let status = twin.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        twin.log_text()
            .contains("already in use by another daemon on this host"),
        "{}",
        twin.log_text()
    );
    eprintln!("twin on the same host refused after {:?}", t.elapsed());

    // Same id, another lock file (another state_dir): no proof, refused because the record
    // keeps being renewed.
    let other = dir.file(
        "other.toml",
        &format!(
            "state_dir = \"{}\"\n{}",
            dir.0.join("other").display(),
            config("rst", &server.url())
        ),
    );
    let t = Instant::now();
    let mut twin = Daemon::start(&other, "n1", &dir.0);
    assert!(!twin.wait_exit(Duration::from_secs(15)).success());
    assert!(
        twin.log_text().contains("already in use by a live node"),
        "{}",
        twin.log_text()
    );
    eprintln!(
        "twin with another lock file refused after {:?}",
        t.elapsed()
    );
    assert!(alive(&mut d));

    // SIGKILL, restart at once, ten times.
    let mut restarts = Vec::new();
    for _ in 0..10 {
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(5));
        let (again, took) = start_timed(&cfg, &dir.0);
        assert!(
            again.log_text().contains("took over the member record"),
            "{}",
            again.log_text()
        );
        restarts.push(took);
        d = again;
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("first start: {first:?}");
    eprintln!("{}", stats("SIGKILL → restart → running", &restarts));
    for took in &restarts {
        assert!(
            *took < MEMBER_TTL,
            "a restart waited for the member TTL: {restarts:?}"
        );
    }
    wait_for(
        "2 members after the restarts",
        Duration::from_secs(20),
        || members(cfg_s).filter(|m| m.len() == 2),
    );
}
