//! The error type shared by every layer of the platform.

use std::time::Duration;

use crate::epoch::Epoch;
use crate::id::{InvalidId, NodeId};
use crate::kv::Revision;

/// Result alias used throughout the platform.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the platform, its traits and their implementations.
///
/// Variants carry enough context to say what to do next. Implementations of the core traits map
/// their own failures onto these variants at their boundary (see each trait's contract).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation must run on the leader and this node is not it.
    #[error("not leader{}", leader_hint(.leader, .epoch))]
    NotLeader {
        /// The current leader, when known.
        leader: Option<NodeId>,
        /// The current leader's epoch, when known.
        epoch: Option<Epoch>,
    },
    /// No node currently holds leadership.
    #[error("no leader: no node currently holds leadership of {0}")]
    NoLeader(String),
    /// The lock is held by someone else.
    #[error("lock already held{}", .holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    LockHeld {
        /// The holder's owner token, when known.
        holder: Option<String>,
    },
    /// The caller does not hold the lock it tried to release or renew.
    #[error("lock not held by this owner")]
    LockNotHeld,
    /// An operation did not complete before its deadline.
    #[error("operation timed out: {0}")]
    Timeout(String),
    /// No app of that name is registered or running.
    #[error("app not found: {0}")]
    AppNotFound(String),
    /// No live node of that id is a member of the platform.
    #[error("node not found: {0}")]
    NodeNotFound(String),
    /// A lifecycle hook exceeded its timeout.
    #[error("hook {hook} timed out after {timeout:?}")]
    HookTimeout {
        /// The hook's name (`on_active`, ...).
        hook: &'static str,
        /// The configured timeout.
        timeout: Duration,
    },
    /// A lifecycle hook returned an error.
    #[error("hook {hook} failed: {message}")]
    HookFailed {
        /// The hook's name.
        hook: &'static str,
        /// The error the hook returned.
        message: String,
    },
    /// The platform is shutting down and accepts no new work.
    #[error("platform is shutting down")]
    ShuttingDown,
    /// An identifier is invalid.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// An argument or configuration value is invalid; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A compare-and-set failed because the key's revision is not the expected one.
    #[error("revision conflict on key {key:?}: expected {expected:?}, current {current:?}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected (`None`: expected the key to be absent).
        expected: Option<Revision>,
        /// The current revision, when known.
        current: Option<Revision>,
    },
    /// A value is larger than the transport or store accepts.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The remote app has no handler for the method.
    #[error("unknown method {method:?} on app {app:?}")]
    UnknownMethod {
        /// The app called.
        app: String,
        /// The method called.
        method: String,
    },
    /// A remote handler returned an error.
    #[error("handler error: {0}")]
    Handler(String),
    /// Nobody is subscribed to the subject a request was sent to.
    #[error("no responders on {0}")]
    NoResponders(String),
    /// A message on one of the platform's subjects or buckets could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A fencing token is older than the current one: the holder was deposed.
    #[error("fenced: token {presented} is stale (current {current})")]
    Fenced {
        /// The token presented.
        presented: Epoch,
        /// The current token.
        current: Epoch,
    },
    /// Another live process already uses this node id.
    #[error(
        "node id {0} is already in use by a live node (its member record keeps being \
         renewed); pick another --node"
    )]
    NodeIdInUse(NodeId),
    /// The store or transport cannot be reached (disconnected, partitioned, closed).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The feature exists in the API but is not available in this build or configuration.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// An unexpected failure inside an implementation.
    #[error("internal error: {0}")]
    Internal(String),
}

fn leader_hint(leader: &Option<NodeId>, epoch: &Option<Epoch>) -> String {
    match (leader, epoch) {
        (Some(l), Some(e)) => format!(" (leader is {l}, epoch {e})"),
        (Some(l), None) => format!(" (leader is {l})"),
        _ => " (no leader known)".to_owned(),
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Unavailable(_) | Error::NoLeader(_) | Error::NoResponders(_)
        )
    }

    /// A short stable name of the variant, used on the wire and as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotLeader { .. } => "not_leader",
            Error::NoLeader(_) => "no_leader",
            Error::LockHeld { .. } => "lock_held",
            Error::LockNotHeld => "lock_not_held",
            Error::Timeout(_) => "timeout",
            Error::AppNotFound(_) => "app_not_found",
            Error::NodeNotFound(_) => "node_not_found",
            Error::HookTimeout { .. } => "hook_timeout",
            Error::HookFailed { .. } => "hook_failed",
            Error::ShuttingDown => "shutting_down",
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Conflict { .. } => "conflict",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnknownMethod { .. } => "unknown_method",
            Error::Handler(_) => "handler",
            Error::NoResponders(_) => "no_responders",
            Error::Malformed(_) => "malformed",
            Error::Fenced { .. } => "fenced",
            Error::NodeIdInUse(_) => "node_id_in_use",
            Error::Unavailable(_) => "unavailable",
            Error::Unsupported(_) => "unsupported",
            Error::Internal(_) => "internal",
        }
    }
}
