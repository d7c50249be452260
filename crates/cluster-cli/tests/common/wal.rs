//! Helpers for the tests of `[apps.sqlite]` apps: the stock `sqlite3` CLI and the configuration.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{cli, wait_for};

/// Runs `sql` on `db` with the `sqlite3` CLI (5 s busy timeout); its output, `None` on failure.
pub fn sqlite3(db: &Path, sql: &str) -> Option<String> {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 5000", db.to_str().unwrap(), sql])
        .output()
        .expect("the sqlite3 CLI is needed by this test: apt-get install sqlite3");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Rows of table `t` matching `filter`; `None` while the file or table does not exist.
pub fn count(db: &Path, filter: &str) -> Option<i64> {
    if !db.exists() {
        return None;
    }
    sqlite3(db, &format!("SELECT count(*) FROM t WHERE {filter}"))?
        .parse()
        .ok()
}

/// A test configuration (see [`super::platform_config`]) with a Singleton app `db` replicating
/// the SQLite database `db`, written by a process backend running `sh -c script` (environment:
/// `DB` = the database, plus `env`, extra `KEY = "value"` pairs of a TOML inline table, with a
/// leading comma), and a Spread app `web`.
pub fn sqlite_app_config(platform: &str, url: &str, db: &Path, script: &str, env: &str) -> String {
    super::platform_config(platform, url, "10s")
        + &format!(
            r#"[[apps]]
name = "db"
mode = "singleton"
[apps.sqlite]
path = "{db}"
retention_count = 5
[apps.backend]
type = "process"
command = "sh"
args = ["-c", "{script}"]
env = {{ DB = "{db}"{env} }}
graceful_timeout = "2s"
[[apps]]
name = "web"
mode = "spread"
"#,
            db = db.display(),
            script = script.replace('\\', "\\\\").replace('"', "\\\""),
        )
}

/// The leader of app `db` (waits up to 20 s for one), asking with configuration `cfg`.
pub fn leader(cfg: &str) -> String {
    wait_for("a leader of db", Duration::from_secs(20), || {
        let r = cli(&["--config", cfg, "--json", "app", "status", "db"]);
        (r.code == 0).then(|| r.json()["app"]["leader"].as_str().map(str::to_owned))?
    })
}

/// Waits (20 s) until the `wal` audit records of app `db` hold every action of `actions`.
pub fn wait_for_wal_audit(cfg: &str, actions: &[&str]) {
    wait_for("wal audit records", Duration::from_secs(20), || {
        let r = cli(&[
            "--config",
            cfg,
            "--json",
            "audit",
            "--category",
            "wal",
            "--limit",
            "1000",
        ]);
        let v = (r.code == 0).then(|| r.json())?;
        let seen: Vec<&str> = v["entries"]
            .as_array()?
            .iter()
            .filter(|e| e["app"] == "db")
            .filter_map(|e| e["action"].as_str())
            .collect();
        actions.iter().all(|a| seen.contains(a)).then_some(())
    });
}
