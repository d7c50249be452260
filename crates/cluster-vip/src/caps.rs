//! Capability check of the calling thread, for a clear error before any system change.

use crate::error::VipError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Fails with [`VipError::PermissionDenied`] unless the calling thread's effective set holds
/// `CAP_NET_ADMIN` and `CAP_NET_RAW`. When the status file cannot be read or parsed, the check
/// is left to the kernel (which then refuses the first operation with EPERM).
pub(crate) fn require_net_caps() -> Result<(), VipError> {
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else {
        return Ok(());
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return Ok(());
    };
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .into_iter()
    .filter(|(bit, _)| eff & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(VipError::PermissionDenied(format!(
            "the process lacks {}",
            missing.join(" and ")
        )))
    }
}
