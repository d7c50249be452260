//! Recovery of a diverged standby with real daemons, a real nats-server and the stock `sqlite3`
//! CLI as the app's writer: the standby's file is written behind the replicator's back, the
//! leader leaves, the standby's promotion fails and blocks (the snapshot store was emptied by a
//! raw client, so there is nothing to re-sync from and the failure would repeat); `/health` on that node fails check `wal:db` with the reason and the
//! app has no leader. The old leader returns and leads; the blocked node stays blocked until
//! `cluster wal resync db --from <leader> --yes`, after which it is healthy, page-consistent
//! with the leader and the rogue write is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use common::wal::{count, leader, sqlite_app_config, sqlite3, wait_for_wal_audit};
use common::{Daemon, Scratch, cli, free_port, http_get, wait_for};
use serde_json::Value;

/// `/health/checks` of the node on `port`: (HTTP status, the `wal:db` check if listed).
fn wal_check(port: u16) -> Option<(u16, Option<Value>)> {
    let (status, body) = http_get(port, "/health/checks")?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let check = v["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "wal:db")
        .cloned();
    Some((status, check))
}

fn config(url: &str, db: &Path, pause: &Path, health: u16) -> String {
    // One row every 50 ms with the sqlite3 CLI while the pause file does not exist.
    let script = "sqlite3 -cmd '.timeout 5000' \"$DB\" 'CREATE TABLE IF NOT EXISTS t(x INTEGER)'; \
                  while kill -0 $PPID 2>/dev/null; do \
                  if [ ! -e \"$PAUSE\" ]; then \
                  sqlite3 -cmd '.timeout 5000' \"$DB\" 'INSERT INTO t VALUES (1)' || exit 1; fi; \
                  sleep 0.05; done";
    format!("health_addr = \"127.0.0.1:{health}\"\n")
        + &sqlite_app_config(
            "walrecover",
            url,
            db,
            script,
            &format!(", PAUSE = \"{}\"", pause.display()),
        )
}

#[test]
fn a_diverged_standby_blocks_its_promotion_health_tells_why_and_wal_resync_heals_it() {
    let server = NatsServer::start();
    let dir = Scratch::new("walrecover");
    let pause = dir.0.join("pause");
    let nodes = ["n1", "n2"];
    let ports: Vec<u16> = nodes.iter().map(|_| free_port()).collect();
    let dbs: Vec<_> = nodes
        .iter()
        .map(|n| dir.0.join(format!("{n}/app.db")))
        .collect();
    let cfgs: Vec<_> = (0..2)
        .map(|i| {
            dir.file(
                &format!("{}.toml", nodes[i]),
                &config(&server.url(), &dbs[i], &pause, ports[i]),
            )
        })
        .collect();
    let mut daemons: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&cfgs[i], nodes[i], &dir.0))
        .collect();
    let cfg = cfgs[0].to_str().unwrap();
    let first = leader(cfg);
    let (l, s) = if first == "n1" { (0, 1) } else { (1, 0) };
    let (ldb, sdb) = (&dbs[l], &dbs[s]);
    wait_for("rows on the standby", Duration::from_secs(30), || {
        (count(sdb, "1")? >= 10).then_some(())
    });
    wait_for("both nodes healthy", Duration::from_secs(20), || {
        ports
            .iter()
            .all(|p| http_get(*p, "/health").is_some_and(|(st, _)| st == 200))
            .then_some(())
    });

    // The writer pauses; the standby catches up.
    std::fs::write(&pause, b"").unwrap();
    let rows = wait_for("the standby caught up", Duration::from_secs(20), || {
        let a = count(ldb, "1")?;
        std::thread::sleep(Duration::from_millis(300));
        (count(ldb, "1")? == a && count(sdb, "1")? == a).then_some(a)
    });
    // No snapshot to re-sync from (otherwise the standby heals itself: it restores the
    // bootstrap snapshot and replays the log): a raw client empties the snapshot store.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut snaps = js.get_stream("OBJ_walrecover_snap_db_app").await.unwrap();
        snaps.purge().await.unwrap();
        assert_eq!(snaps.info().await.unwrap().state.messages, 0);
    });
    // Someone writes on the standby's file behind the replicator's back.
    sqlite3(sdb, "CREATE TABLE rogue(x); INSERT INTO rogue VALUES (1)").unwrap();

    // The leader leaves: the standby's promotion fails on the checksum and blocks.
    daemons[l].signal(libc::SIGTERM);
    assert!(daemons[l].wait_exit(Duration::from_secs(30)).success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        if let Some((503, Some(c))) = wal_check(ports[s])
            && c["ok"] == false
        {
            break c["detail"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "wal:db not failing on the standby; its log:\n{}",
            daemons[s].log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        detail.contains("promotion blocked") && detail.contains("checksum mismatch"),
        "{detail}"
    );
    // The failed term ends (its lease is released after the activation's retries), then nobody
    // leads (no livelock of failing terms): sampled for 3 s.
    let scfg = cfgs[s].to_str().unwrap();
    let no_leader = || {
        let r = cli(&["--config", scfg, "--json", "app", "status", "db"]);
        (r.code == 0 && r.json()["app"]["leader"].is_null()).then_some(())
    };
    let t0 = Instant::now();
    wait_for("the failed term ends", Duration::from_secs(20), no_leader);
    eprintln!(
        "failed term ended {:?} after the block was seen",
        t0.elapsed()
    );
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let r = cli(&["--config", scfg, "--json", "app", "status", "db"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.json()["app"]["leader"].is_null(), "{}", r.stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = cli(&["--config", scfg, "health"]);
    assert_ne!(r.code, 0, "cluster health passes without a leader: {r:?}");
    // `snapshot restore` without a leader needs `--on`; the chosen node accepts the leaderless
    // path (it knows no leader) and here refuses the unknown snapshot.
    let r = cli(&[
        "--config", scfg, "snapshot", "restore", "x-1-1", "--app", "db",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("--on"), "{}", r.stderr);
    let r = cli(&[
        "--config", scfg, "snapshot", "restore", "x-1-1", "--app", "db", "--on", nodes[s], "--yes",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("unknown snapshot"), "{}", r.stderr);

    // The old leader returns and leads from its intact replica; the blocked node stays blocked
    // (nothing to re-sync from: no snapshot exists).
    daemons[l] = Daemon::start(&cfgs[l], nodes[l], &dir.0);
    assert_eq!(leader(cfg), first);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(wal_check(ports[s]), Some((503, Some(_)))),
        "still blocked before the resync"
    );

    // Operator: re-sync the diverged standby from the leader.
    let r = cli(&[
        "--config", cfg, "--json", "wal", "resync", "db", "--from", &first, "--yes",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    let steps = v["resync"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{v}");
    assert_eq!(steps[0]["node"], first.as_str());
    assert!(steps[0]["result"]["published"].is_string(), "{v}");
    assert_eq!(steps[1]["node"], nodes[s]);
    assert_eq!(steps[1]["result"]["was_blocked"], true, "{v}");

    // Healthy again, without the rogue write, and following the leader.
    wait_for("the standby healthy", Duration::from_secs(30), || {
        matches!(wal_check(ports[s])?, (200, None)).then_some(())
    });
    wait_for("the rogue table gone", Duration::from_secs(30), || {
        (sqlite3(
            sdb,
            "SELECT count(*) FROM sqlite_master WHERE name = 'rogue'",
        )? == "0"
            && count(sdb, "1")? >= rows)
            .then_some(())
    });
    std::fs::remove_file(&pause).unwrap();
    wait_for("writes replicate again", Duration::from_secs(30), || {
        (count(sdb, "1")? > rows + 5).then_some(())
    });
    assert_eq!(sqlite3(ldb, "PRAGMA integrity_check").unwrap(), "ok");
    assert_eq!(sqlite3(sdb, "PRAGMA integrity_check").unwrap(), "ok");
    wait_for_wal_audit(cfg, &["promotion-blocked", "resync"]);

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
