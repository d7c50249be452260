//! Errors of the VIP resource and their mapping onto the platform's [`cluster_core::Error`].

use std::net::Ipv4Addr;

use cluster_core::Epoch;

/// Everything that can go wrong while configuring, claiming or releasing a VIP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VipError {
    /// The address is not a valid `a.b.c.d[/prefix]`.
    #[error("invalid VIP address {input:?}: {reason}")]
    InvalidCidr {
        /// What was given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration value is invalid (interface name, counts, intervals).
    #[error("invalid VIP configuration: {0}")]
    InvalidConfig(String),
    /// The interface does not exist in the network namespace the resource was created in.
    #[error(
        "no such interface {0:?} in this network namespace (the VIP resource acts in the \
         namespace of the thread that created it)"
    )]
    NoSuchInterface(String),
    /// The interface exists but is administratively down, so no ARP can be sent on it.
    #[error("interface {0:?} is down; bring it up before claiming a VIP on it")]
    InterfaceDown(String),
    /// The process lacks a capability or the kernel refused an operation with EPERM/EACCES.
    #[error(
        "permission denied: {0} (managing a VIP needs CAP_NET_ADMIN for addresses and \
         CAP_NET_RAW for ARP; run as root or grant both capabilities)"
    )]
    PermissionDenied(String),
    /// Check-before-claim: another host answers ARP for the address.
    #[error("VIP {address} is already in use: host {mac} answers ARP for it; refusing to claim")]
    AddressInUse {
        /// The VIP.
        address: Ipv4Addr,
        /// The hardware address of the host that answered.
        mac: String,
    },
    /// The claim carries an epoch older than one this process already saw for the address.
    #[error("fenced: claim of VIP {address} with epoch {presented} is older than epoch {current}")]
    Fenced {
        /// The VIP.
        address: Ipv4Addr,
        /// The epoch of the refused claim.
        presented: Epoch,
        /// The newest epoch seen for the address.
        current: Epoch,
    },
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// A socket or system call failed.
    #[error("{0}")]
    Io(String),
    /// The resource's worker thread is gone (the resource was shut down).
    #[error("VIP resource is shut down")]
    ShutDown,
}

impl VipError {
    /// Maps an I/O error of `what`, turning EPERM/EACCES into [`VipError::PermissionDenied`].
    pub(crate) fn io(what: &str, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                Self::PermissionDenied(format!("{what}: {e}"))
            }
            _ => Self::Io(format!("{what}: {e}")),
        }
    }
}

impl From<VipError> for cluster_core::Error {
    fn from(e: VipError) -> Self {
        use cluster_core::Error;
        match e {
            VipError::Fenced {
                presented, current, ..
            } => Error::Fenced { presented, current },
            VipError::InvalidCidr { .. }
            | VipError::InvalidConfig(_)
            | VipError::NoSuchInterface(_)
            | VipError::InterfaceDown(_) => Error::InvalidArgument(e.to_string()),
            VipError::PermissionDenied(_) => Error::Unsupported(e.to_string()),
            VipError::AddressInUse { .. } | VipError::Netlink(_) | VipError::Io(_) => {
                Error::Unavailable(e.to_string())
            }
            VipError::ShutDown => Error::ShuttingDown,
        }
    }
}
