//! Project automation. `cargo xtask <command>`:
//!
//! * `test`: install what the tests need (missing Debian packages with apt-get when root, podman's
//!   test settings, nats-server >= 2.11 into `.tools`; see `system.rs`), the dependency checks
//!   (`deps-check`), `cargo fmt --check`, `cargo clippy -D warnings`, all tests, and `cargo doc`
//!   without warnings.
//! * `deps-check`: only the dependency checks: `cluster-core` and `cluster-runtime` depend on no
//!   adapter crate, the layering of `cluster-runtime`'s modules (`modgraph.rs`), and no test
//!   code in production builds (`cluster-testkit` is a dev-dependency only, the `cluster`
//!   binary's normal tree has no tokio `test-util`; see `graph_rules.rs`).
//! * `tools`: only install what the tests need (system packages and nats-server).
//! * `e2e`: the CLI's end-to-end tests (real binary, nats-server, daemons), then `e2e-image`
//!   and `sqlite-external`.
//! * `e2e-image`: the container image with 3 containers and a nats-server (podman; `image.rs`).
//! * `image [--binary PATH] [--tag TAG]`: the container image with podman (`image.rs`).
//! * `demo`: nats-server + 3 daemons, show the leader, SIGKILL it, show the failover, clean up.
//! * `release`: the release archive in `dist/` (binary, systemd unit, example configuration,
//!   completions, man pages, checksums; see `release.rs`), version from git.
//! * `sim (--seed N | --seeds N [--start S]) [--minutes M] [--trace]`: the deterministic
//!   simulator (`crates/cluster-sim`, issue 13 tier 1): one seed with its report, or many
//!   seeds with a summary; fails when an invariant broke (each failure prints its `--seed`).
//! * `sqlite-external`: a crate outside the workspace uses `cluster`'s `sqlite` feature without
//!   `LIBSQLITE3_FLAGS` (see `sqlite_external.rs`; a second dependency build of several minutes,
//!   so it runs in `e2e`, not in `test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod e2e;
mod graph_rules;
mod image;
mod modgraph;
mod release;
mod sqlite_external;
mod system;
mod tools;

/// Crates `cluster-core` and `cluster-runtime` must never depend on, even transitively: they
/// are written against traits, the adapters live in other crates.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "async-nats",
    "nats",
    "rusqlite",
    "libsqlite3-sys",
    "sqlx",
    "sqlx-sqlite",
    "hyper",
    "axum",
    "reqwest",
    "bollard",
    "rtnetlink",
    "netlink-packet-route",
    "zbus",
    "mio",
    "socket2",
];

/// Crates `cluster-core` alone must not depend on either: scheduling (cron, time zones) is the
/// runtime's business, so an implementer of a core trait never compiles it.
const FORBIDDEN_IN_CORE_ONLY: &[&str] = &["chrono", "chrono-tz", "cron"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("deps-check") => deps_check(&root),
        Some("e2e") => e2e::e2e(&root)
            .and_then(|()| image::e2e(&root))
            .and_then(|()| sqlite_external::run(&root)),
        Some("e2e-image") => image::e2e(&root),
        Some("image") => image::image(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("demo") => e2e::demo(&root),
        Some("release") => release::release(&root),
        Some("sqlite-external") => sqlite_external::run(&root),
        Some("sim") => sim(&root, &args[1..]),
        Some("tools") => system::ensure_system().and_then(|()| {
            tools::ensure_nats_server(&root).map(|p| {
                println!("nats-server: {}", p.display());
            })
        }),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|e2e|e2e-image|image|bench|demo|release|sqlite-external|deps-check|tools|sim>"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .map(Path::to_path_buf)
        .context("xtask must live one level below the workspace root")
}

pub(crate) fn run(root: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    println!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Every benchmark: leadership and messaging (`cluster`), the NATS adapter (`cluster-nats`),
/// placement (`cluster-placement`) and WAL replication (`cluster-wal`). Each prints a table;
/// `docs/BENCHMARKS.md` records them. `--quick` runs fewer iterations where supported.
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    let nats = tools::ensure_nats_server(root)?;
    let nats = nats.to_string_lossy().to_string();
    let quick = extra.iter().any(|a| a == "--quick");
    let mut envs = vec![("NATS_SERVER_BIN", nats.as_str())];
    if quick {
        envs.push(("BENCH_QUICK", "1"));
    }
    for (package, bench) in [
        ("cluster", "failover"),
        ("cluster-nats", "kv_latency"),
        ("cluster-placement", "placement"),
        ("cluster-wal", "replication"),
        ("cluster-wal", "pool"),
    ] {
        run(
            root,
            "cargo",
            &["bench", "-p", package, "--bench", bench],
            &envs,
        )?;
    }
    Ok(())
}

/// The deterministic simulator: `cargo run -p cluster-sim -- <args>` (see `crates/cluster-sim`).
fn sim(root: &Path, extra: &[String]) -> Result<()> {
    let mut args = vec!["run", "-q", "-p", "cluster-sim", "--"];
    args.extend(extra.iter().map(String::as_str));
    run(root, "cargo", &args, &[])
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    system::ensure_system()?;
    let nats = tools::ensure_nats_server(root)?;
    let nats = nats.to_string_lossy().to_string();
    deps_check(root)?;
    run(root, "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    let mut args = vec!["test", "--workspace", "--no-fail-fast"];
    args.extend(extra.iter().map(String::as_str));
    run(root, "cargo", &args, &[("NATS_SERVER_BIN", &nats)])?;
    run(
        root,
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    println!("==> all checks passed");
    Ok(())
}

/// Fails if the normal dependency graph of `cluster-core` or `cluster-runtime` contains an
/// adapter or network crate, or `cluster-core`'s contains a scheduling crate, if the runtime's
/// module layering is broken ([`modgraph`]), or if test code reaches a production build
/// ([`graph_rules`]).
fn deps_check(root: &Path) -> Result<()> {
    for (krate, extra) in [
        ("cluster-core", FORBIDDEN_IN_CORE_ONLY),
        ("cluster-runtime", &[][..]),
    ] {
        println!("==> {krate} dependency check");
        let out = Command::new("cargo")
            .args([
                "tree", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
            ])
            .current_dir(root)
            .output()
            .context("cannot run cargo tree")?;
        if !out.status.success() {
            bail!(
                "cargo tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let offending = forbidden_in(&tree, extra);
        if !offending.is_empty() {
            bail!(
                "{krate} must not depend on adapter, network or scheduling crates, found: {}",
                offending.join(", ")
            );
        }
        println!("    ok: no forbidden crate in {krate}'s graph");
    }
    modgraph::check(root)?;
    graph_rules::check(root)
}

/// The forbidden crate names in `cargo tree --prefix none --format {p}` output.
fn forbidden_in<'a>(tree: &'a str, extra: &[&str]) -> Vec<&'a str> {
    let mut found: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| FORBIDDEN_IN_CORE.contains(name) || extra.contains(name))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_forbidden_crates() {
        let tree =
            "cluster-core v0.1.0\ntokio v1.54.1\nmio v1.0.0\nasync-nats v0.51.0\nmio v1.0.0 (*)\n";
        assert_eq!(forbidden_in(tree, &[]), vec!["async-nats", "mio"]);
        assert!(forbidden_in("cluster-core v0.1.0\ntokio v1.54.1\n", &[]).is_empty());
        let core = "cluster-core v0.1.0\ncron v0.15.0\n";
        assert_eq!(forbidden_in(core, FORBIDDEN_IN_CORE_ONLY), vec!["cron"]);
        assert!(forbidden_in(core, &[]).is_empty());
    }
}
