//! The daemon's lock file: while it holds it, no second daemon of the same node id (platform,
//! NATS servers) starts on this host, and a daemon restarted after a crash proves with it that
//! its predecessor is gone, so it takes the member record over at once (see
//! `cluster::core::host`).

use std::path::PathBuf;

use cluster::NodeId;
use cluster::core::host::{HostLock, HostLockError};

use crate::exit::{CliResult, Code, Failure};
use crate::settings::Settings;

/// The lock file of `node`: `{state_dir}/cluster-{platform}-{node}-{hash of the NATS
/// servers}.lock`; `state_dir` defaults to systemd's `$STATE_DIRECTORY` (the unit's
/// `StateDirectory=`, writable under `ProtectSystem=strict`), else `$XDG_RUNTIME_DIR`, else the
/// temp dir.
pub(crate) fn path(settings: &Settings, node: &NodeId) -> PathBuf {
    let dir = settings.config.state_dir.clone().unwrap_or_else(|| {
        let systemd = std::env::var_os("STATE_DIRECTORY")
            .and_then(|dirs| std::env::split_paths(&dirs).next())
            .filter(|d| !d.as_os_str().is_empty());
        systemd
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
            .unwrap_or_else(std::env::temp_dir)
    });
    let servers = settings.nats.servers.join(",");
    dir.join(format!(
        "cluster-{}-{node}-{:08x}.lock",
        settings.platform,
        fnv1a(servers.as_bytes()) as u32
    ))
}

/// Takes the lock of `node`; refuses while another daemon of it runs on this host.
pub(crate) fn acquire(settings: &Settings, node: &NodeId) -> CliResult<HostLock> {
    let path = path(settings, node);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(Code::Error, format!("state_dir {}: {e}", dir.display())))?;
    }
    HostLock::acquire(&path).map_err(|e| match e {
        HostLockError::Held { path } => Failure::new(
            Code::Error,
            format!(
                "node id {node} is already in use by another daemon on this host (it holds {})",
                path.display()
            ),
        ),
        e => Failure::new(Code::Error, e.to_string()),
    })
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
