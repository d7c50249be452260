//! `cargo xtask sqlite-external`: proves that the `sqlite` feature of `cluster` works for a
//! library user, i.e. in a crate outside this workspace, built without the workspace's
//! `.cargo/config.toml` (no `LIBSQLITE3_FLAGS`): the crate (template in `xtask/sqlite-external/`)
//! is written to a temporary directory with path dependencies on `cluster` (feature `sqlite`)
//! and `cluster-wal`, built offline with this workspace's `Cargo.lock` (same versions, from the
//! local registry cache) and run; it replicates a transaction to standbys, which write pages
//! through `sqlite_dbpage` (it failed with `DbpageUnavailable` before `cluster-wal/build.rs`).
//!
//! Build cost: the crate cannot share the workspace's target directory (other `LIBSQLITE3_FLAGS`
//! → another `libsqlite3-sys`/`cluster-wal` build, which would thrash the workspace's), so it
//! uses `<target>/sqlite-external`, kept between runs: the first run builds the dependency graph
//! once (about 10 minutes on 2 busy cores), later runs only what changed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const MANIFEST: &str = include_str!("../sqlite-external/Cargo.toml.in");
const MAIN: &str = include_str!("../sqlite-external/main.rs");

pub(crate) fn run(root: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("cluster-sqlite-external-{}", std::process::id()));
    let result = build_and_run(root, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn build_and_run(root: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("{}", dir.display()))?;
    let root_str = root.to_str().context("workspace path is not UTF-8")?;
    std::fs::write(dir.join("Cargo.toml"), MANIFEST.replace("@ROOT@", root_str))?;
    std::fs::write(dir.join("src/main.rs"), MAIN)?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("sqlite-external");
    println!(
        "==> cargo run --offline (external crate in {}, target {})",
        dir.display(),
        target.display()
    );
    let status = Command::new("cargo")
        .args(["run", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("LIBSQLITE3_FLAGS")
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the external sqlite crate failed ({status})");
    }
    Ok(())
}
