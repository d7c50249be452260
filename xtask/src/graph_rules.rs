//! Crate-graph rules that keep test code out of production builds (issue 21): part of
//! `cargo xtask deps-check`.
//!
//! * No publishable workspace crate depends on `cluster-testkit` except as a dev-dependency (the
//!   in-memory implementations that dev mode needs are in `cluster-memory`). Test-only tools
//!   marked `publish = false` (the simulator `cluster-sim`) may use it as a normal dependency;
//!   the daemon tree check below still keeps them out of the binary.
//! * The `cluster` binary's normal dependency tree has neither `cluster-testkit` nor tokio's
//!   `test-util` feature (paused time is for tests only).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The crate holding test-only machinery.
const TESTKIT: &str = "cluster-testkit";
/// The package of the daemon binary.
const DAEMON: &str = "cluster-cli";
/// The feature node of tokio's test utilities in `cargo tree -e features` output.
const TOKIO_TEST_UTIL: &str = "tokio feature \"test-util\"";

/// Runs both rules; fails with every violation found.
pub(crate) fn check(root: &Path) -> Result<()> {
    println!("==> test code out of production builds");
    let metadata = cargo(root, &["metadata", "--format-version", "1", "--no-deps"])?;
    let metadata: Value = serde_json::from_str(&metadata).context("cargo metadata output")?;
    let mut violations = testkit_not_dev_only(&metadata);
    let tree = cargo(
        root,
        &[
            "tree",
            "-p",
            DAEMON,
            "-e",
            "normal,features",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ],
    )?;
    violations.extend(test_code_in_daemon_tree(&tree));
    if !violations.is_empty() {
        bail!(
            "test code in production builds:\n  {}",
            violations.join("\n  ")
        );
    }
    println!("    ok: {TESTKIT} is a dev-dependency only; the {DAEMON} tree has no test-util");
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("cargo")
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cargo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("cargo output is not UTF-8")
}

/// Every publishable workspace crate that depends on `cluster-testkit` as a normal or build
/// dependency, in `cargo metadata --no-deps` output (`publish = false` shows as `"publish": []`).
fn testkit_not_dev_only(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut found = Vec::new();
    for package in packages
        .iter()
        .filter(|p| p["publish"] != serde_json::json!([]))
    {
        let name = package["name"].as_str().unwrap_or("?");
        let deps = package["dependencies"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for dep in deps {
            let kind = dep["kind"].as_str().unwrap_or("normal");
            if dep["name"] == TESTKIT && kind != "dev" {
                found.push(format!(
                    "{name} depends on {TESTKIT} as a {kind} dependency"
                ));
            }
        }
    }
    found
}

/// Test code in the daemon's `cargo tree -e normal,features --prefix none --format {p}` output.
fn test_code_in_daemon_tree(tree: &str) -> Vec<String> {
    let mut found = Vec::new();
    if tree.lines().any(|l| l.starts_with(&format!("{TESTKIT} v"))) {
        found.push(format!(
            "{DAEMON}'s normal dependency tree contains {TESTKIT}"
        ));
    }
    if tree.lines().any(|l| l.starts_with(TOKIO_TEST_UTIL)) {
        found.push(format!(
            "{DAEMON}'s normal dependency tree enables tokio's test-util (see `cargo tree -p \
             {DAEMON} -e normal,features -i tokio`)"
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn testkit_is_allowed_only_as_a_dev_dependency() {
        let metadata = json!({"packages": [
            {"name": "cluster", "dependencies": [
                {"name": "cluster-memory", "kind": null},
                {"name": "cluster-testkit", "kind": "dev"}
            ]},
            {"name": "cluster-vip", "dependencies": [{"name": "cluster-testkit", "kind": null}]},
            {"name": "cluster-wal", "dependencies": [{"name": "cluster-testkit", "kind": "build"}]},
            {"name": "cluster-sim", "publish": [],
             "dependencies": [{"name": "cluster-testkit", "kind": null}]}
        ]});
        assert_eq!(
            testkit_not_dev_only(&metadata),
            vec![
                "cluster-vip depends on cluster-testkit as a normal dependency",
                "cluster-wal depends on cluster-testkit as a build dependency",
            ]
        );
    }

    #[test]
    fn daemon_tree_must_not_hold_testkit_or_test_util() {
        let clean = "cluster-cli v0.1.0 (/w)\ncluster-memory v0.1.0 (/w)\ntokio feature \"time\"\n\
                     tokio v1.54.1\n";
        assert!(test_code_in_daemon_tree(clean).is_empty());
        let dirty = "cluster-cli v0.1.0 (/w)\ncluster-testkit v0.1.0 (/w)\n\
                     tokio feature \"test-util\" (*)\n";
        assert_eq!(test_code_in_daemon_tree(dirty).len(), 2);
    }
}
