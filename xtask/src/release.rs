//! `cargo xtask release`: the release archive `dist/cluster-<version>-<arch>-<os>.tar.gz`.
//!
//! ```text
//! cluster-<version>-<arch>-<os>/
//!   bin/cluster                     the optimised binary
//!   systemd/cluster.service         packaging/cluster.service
//!   examples/cluster.toml           the example configuration
//!   completions/cluster.bash, _cluster (zsh), cluster.fish
//!   man/man1/cluster.1, cluster-<command>.1 …   generated from the clap definitions
//!   doc/OPERATIONS.md, CONFIG.md, CLI.md
//!   LICENSE*                        when the repository has one
//!   SHA256SUMS                      of every file above
//! ```
//! plus `dist/<archive>.sha256`. The completions and man pages come from
//! `crates/cluster-cli/src/cli.rs` itself (included here as a module), so they cannot drift.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use sha2::Digest;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/cluster-cli/src/cli.rs"]
mod cli;

use crate::run;

/// Builds the optimised binary (niced: it is long) and packs the archive.
pub(crate) fn release(root: &Path) -> Result<()> {
    let describe = Command::new("git")
        .args(["describe", "--tags", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .context("cannot run git")?;
    let version = String::from_utf8_lossy(&describe.stdout).trim().to_owned();
    if version.is_empty() {
        bail!("git describe gave no version");
    }
    let bin = build_binary(root, &[("CLUSTER_BUILD_VERSION", &version)])?;
    let archive = package(root, &bin, &version, &root.join("dist"))?;
    println!("==> {}", archive.display());
    Ok(())
}

/// Builds the optimised `cluster` binary (niced: it is long on a small machine) and returns its
/// path; `envs` reach the build (e.g. the version it reports).
pub(crate) fn build_binary(root: &Path, envs: &[(&str, &str)]) -> Result<PathBuf> {
    crate::run(
        root,
        "nice",
        &[
            "-n",
            "5",
            "cargo",
            "build",
            "--release",
            "-p",
            "cluster-cli",
        ],
        envs,
    )?;
    Ok(crate::e2e::target_dir(root).join("release").join("cluster"))
}

/// Lays out the archive of `bin` under `dist` and packs it; returns the archive's path.
pub(crate) fn package(root: &Path, bin: &Path, version: &str, dist: &Path) -> Result<PathBuf> {
    let name = format!(
        "cluster-{version}-{}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let copy = |from: &Path, to: &str| -> Result<()> {
        let to = stage.join(to);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    copy(bin, "bin/cluster")?;
    copy(
        &root.join("packaging/cluster.service"),
        "systemd/cluster.service",
    )?;
    copy(&root.join("examples/cluster.toml"), "examples/cluster.toml")?;
    for doc in ["OPERATIONS.md", "CONFIG.md", "CLI.md"] {
        copy(&root.join("docs").join(doc), &format!("doc/{doc}"))?;
    }
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("LICENSE") || file.starts_with("COPYING") {
            copy(&entry.path(), &file)?;
        }
    }
    completions(&stage.join("completions"))?;
    man_pages(&stage.join("man/man1"))?;
    let mut files = Vec::new();
    list_files(&stage, &stage, &mut files)?;
    files.sort();
    let sums: String = files
        .iter()
        .map(|f| Ok(format!("{}  {f}\n", sha256_file(&stage.join(f))?)))
        .collect::<Result<_>>()?;
    std::fs::write(stage.join("SHA256SUMS"), sums)?;
    let archive = dist.join(format!("{name}.tar.gz"));
    let dist_s = dist.to_string_lossy();
    let archive_s = archive.to_string_lossy();
    run(
        dist,
        "tar",
        &[
            "-czf",
            &archive_s,
            "--owner=0",
            "--group=0",
            "-C",
            &dist_s,
            &name,
        ],
        &[],
    )?;
    std::fs::write(
        dist.join(format!("{name}.tar.gz.sha256")),
        format!("{}  {name}.tar.gz\n", sha256_file(&archive)?),
    )?;
    Ok(archive)
}

fn completions(dir: &Path) -> Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    for (shell, file) in [
        (Shell::Bash, "cluster.bash"),
        (Shell::Zsh, "_cluster"),
        (Shell::Fish, "cluster.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cli::Cli::command(), "cluster", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
}

/// `cluster.1` and one page per subcommand (`cluster-run.1`, `cluster-app-move.1`, …).
fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cli::Cli::command();
    cmd.build();
    man_page(dir, &cmd, "cluster")
}

fn man_page(dir: &Path, cmd: &clap::Command, name: &str) -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .render(&mut out)
        .with_context(|| format!("man page of {name}"))?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        man_page(dir, sub, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}

fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            list_files(base, &path, out)?;
        } else {
            let rel = path.strip_prefix(base)?;
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let digest = sha2::Sha256::new_with_prefix(&bytes).finalize();
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_archive_holds_binary_unit_config_completions_man_pages_and_checksums() {
        let root = crate::workspace_root().unwrap();
        let dist = std::env::temp_dir().join(format!("xtask-release-{}", std::process::id()));
        std::fs::create_dir_all(&dist).unwrap();
        let stub = dist.join("stub-cluster");
        std::fs::write(&stub, "#!/bin/sh\necho stub\n").unwrap();
        let archive = package(&root, &stub, "v0.0.0-test", &dist).unwrap();

        let listing = Command::new("tar")
            .arg("-tzf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(listing.status.success());
        let listing = String::from_utf8(listing.stdout).unwrap();
        let top = format!(
            "cluster-v0.0.0-test-{}-{}/",
            std::env::consts::ARCH,
            std::env::consts::OS
        );
        for want in [
            "bin/cluster",
            "systemd/cluster.service",
            "examples/cluster.toml",
            "completions/cluster.bash",
            "completions/_cluster",
            "completions/cluster.fish",
            "man/man1/cluster.1",
            "man/man1/cluster-run.1",
            "man/man1/cluster-node-drain.1",
            "doc/OPERATIONS.md",
            "SHA256SUMS",
        ] {
            assert!(
                listing.lines().any(|l| l == format!("{top}{want}")),
                "{want} missing from the archive:\n{listing}"
            );
        }
        let stage = dist.join(top.trim_end_matches('/'));
        let man = std::fs::read_to_string(stage.join("man/man1/cluster-run.1")).unwrap();
        assert!(man.contains(".TH cluster-run"), "a roff page: {man}");
        assert!(man.contains("label"), "run's flags are documented: {man}");
        let bash = std::fs::read_to_string(stage.join("completions/cluster.bash")).unwrap();
        assert!(bash.contains("stepdown"), "subcommands complete");

        // Every file but SHA256SUMS is listed with its real digest.
        let sums = std::fs::read_to_string(stage.join("SHA256SUMS")).unwrap();
        let files = listing
            .lines()
            .filter(|l| !l.ends_with('/') && !l.ends_with("SHA256SUMS"))
            .count();
        assert_eq!(sums.lines().count(), files, "{sums}");
        for line in sums.lines() {
            let (digest, file) = line.split_once("  ").unwrap();
            assert_eq!(sha256_file(&stage.join(file)).unwrap(), digest, "{file}");
        }
        let outer = std::fs::read_to_string(
            dist.join(format!("{}.tar.gz.sha256", top.trim_end_matches('/'))),
        )
        .unwrap();
        assert!(outer.starts_with(&sha256_file(&archive).unwrap()));
        std::fs::remove_dir_all(&dist).unwrap();
    }
}
