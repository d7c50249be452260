//! `[apps.sqlite]` with a process backend that writes the database (an external writer:
//! capture polls the WAL), and `cluster snapshot create|list|delete|restore` through the admin
//! service: the real binary, two daemons, a real nats-server, the stock `sqlite3` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use cluster_testkit::nats_server::NatsServer;
use common::wal::{count, leader, sqlite_app_config, sqlite3, wait_for_wal_audit};
use common::{Daemon, Scratch, cli, wait_for};

fn config(platform: &str, url: &str, db: &Path) -> String {
    // The backend writes one row every 50 ms with the sqlite3 CLI and exits with the daemon.
    let script = "sqlite3 -cmd '.timeout 5000' \"$DB\" 'CREATE TABLE IF NOT EXISTS t(x INTEGER)'; \
                  while kill -0 $PPID 2>/dev/null; do \
                  sqlite3 -cmd '.timeout 5000' \"$DB\" 'INSERT INTO t VALUES (1)' || exit 1; \
                  sleep 0.05; done";
    sqlite_app_config(platform, url, db, script, "")
}

#[test]
fn sqlite_app_with_external_writer_snapshots_and_restore() {
    let server = NatsServer::start();
    let dir = Scratch::new("wal");
    let dbs = [dir.0.join("n1/app.db"), dir.0.join("n2/app.db")];
    let cfgs: Vec<_> = ["n1", "n2"]
        .iter()
        .zip(&dbs)
        .map(|(n, db)| dir.file(&format!("{n}.toml"), &config("walcli", &server.url(), db)))
        .collect();
    let cfg = cfgs[0].to_str().unwrap();
    let mut daemons: Vec<Daemon> = ["n1", "n2"]
        .iter()
        .zip(&cfgs)
        .map(|(n, c)| Daemon::start(c, n, &dir.0))
        .collect();
    let first = leader(cfg);
    let (ldb, sdb) = if first == "n1" {
        (&dbs[0], &dbs[1])
    } else {
        (&dbs[1], &dbs[0])
    };

    // The backend's commits (another process, caught by polling) reach the standby.
    wait_for(
        "rows replicated to the standby",
        Duration::from_secs(30),
        || (count(sdb, "1")? >= 10).then_some(()),
    );

    // A snapshot, listed with its position.
    let r = cli(&[
        "--config", cfg, "--json", "snapshot", "create", "--app", "db",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let snap = r.json()["snapshot"].clone();
    let id = snap["id"].as_str().unwrap().to_owned();
    assert!(snap["txid"].as_u64().unwrap() > 0);
    let r = cli(&["--config", cfg, "--json", "snapshot", "list", "--app", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    let list = r.json()["snapshots"].as_array().unwrap().clone();
    let listed = list.iter().find(|s| s["id"] == id.as_str()).unwrap();
    for key in ["txid", "stream_seq", "checksum", "size", "age_secs"] {
        assert!(!listed[key].is_null(), "{key} missing: {listed}");
    }
    let r = cli(&["--config", cfg, "snapshot", "list", "--app", "db"]);
    assert!(
        r.stdout.contains("STREAM SEQ") && r.stdout.contains(&id),
        "{r:?}"
    );

    // The newest snapshot of the lineage cannot be deleted; unknown ids and apps are refused.
    let r = cli(&["--config", cfg, "snapshot", "delete", &id, "--app", "db"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("newest"), "{}", r.stderr);
    let r = cli(&[
        "--config", cfg, "snapshot", "delete", "nope-1-1", "--app", "db",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    let r = cli(&["--config", cfg, "snapshot", "list", "--app", "web"]);
    assert_ne!(r.code, 0, "{r:?}");

    // A marker written after the snapshot (by another external writer) is replicated...
    sqlite3(ldb, "INSERT INTO t VALUES (-1)").unwrap();
    wait_for("marker on the standby", Duration::from_secs(20), || {
        (count(sdb, "x = -1")? == 1).then_some(())
    });

    // ...and gone on every replica after restoring the snapshot.
    let r = cli(&[
        "--config", cfg, "--json", "snapshot", "restore", &id, "--app", "db",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["restore"]["snapshot"], id.as_str());
    assert!(v["restore"]["steps"].as_array().unwrap().len() >= 5, "{v}");
    assert!(!v["leader"].is_null(), "resumed with a leader: {v}");
    for db in &dbs {
        wait_for(
            "marker gone and writes resumed",
            Duration::from_secs(30),
            || (count(db, "x = -1")? == 0 && count(db, "1")? > 0).then_some(()),
        );
    }
    let now = leader(cfg);
    let (ldb, sdb) = if now == "n1" {
        (&dbs[0], &dbs[1])
    } else {
        (&dbs[1], &dbs[0])
    };
    let before = count(sdb, "1").unwrap();
    wait_for(
        "replication continues after the restore",
        Duration::from_secs(30),
        || (count(sdb, "1")? > before + 5).then_some(()),
    );
    assert_eq!(sqlite3(ldb, "PRAGMA integrity_check").unwrap(), "ok");
    assert_eq!(sqlite3(sdb, "PRAGMA integrity_check").unwrap(), "ok");

    // The pre-restore snapshot belongs to the old lineage now and can be deleted.
    let r = cli(&["--config", cfg, "snapshot", "delete", &id, "--app", "db"]);
    assert_eq!(r.code, 0, "{r:?}");

    // Promotions, the restore and the deletion are on the platform's audit stream.
    wait_for_wal_audit(
        cfg,
        &[
            "promoted",
            "restore.started",
            "restore.completed",
            "snapshot.deleted",
        ],
    );

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
