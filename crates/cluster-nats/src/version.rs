//! The server-version gate: the platform needs nats-server 2.11 or newer.

use cluster_core::{Error, Result};

/// The oldest supported server version (per-message TTL and subject delete markers).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 11, 0);

/// Parses `2.15.1` (optionally with a leading `v` and a `-suffix`).
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Accepts `version` if it is at least [`MIN_SERVER_VERSION`].
pub fn check_server_version(version: &str) -> Result<()> {
    let (a, b, c) = MIN_SERVER_VERSION;
    match parse_version(version) {
        Some(v) if v >= MIN_SERVER_VERSION => Ok(()),
        Some(_) => Err(Error::Unsupported(format!(
            "nats-server {version} is too old: version {a}.{b}.{c} or newer is needed \
             (per-message TTL and subject delete markers)"
        ))),
        None => Err(Error::Unsupported(format!(
            "cannot parse nats-server version {version:?}; version {a}.{b}.{c} or newer is needed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11, 0)));
        assert!(check_server_version("2.11.0").is_ok());
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("3.0.0").is_ok());
        let err = check_server_version("2.10.26").unwrap_err().to_string();
        assert!(err.contains("2.11.0"), "{err}");
        assert!(check_server_version("2.9.10").is_err());
        assert!(check_server_version("garbage").is_err());
    }
}
