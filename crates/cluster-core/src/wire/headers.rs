//! Header names.

/// Protocol version of the message (`1`).
pub const VERSION: &str = "Cluster-Version";
/// RPC method name.
pub const METHOD: &str = "Cluster-Method";
/// Node that sent the message.
pub const SOURCE_NODE: &str = "Cluster-Source-Node";
/// App that sent the message (absent for platform-level senders).
pub const SOURCE_APP: &str = "Cluster-Source-App";
/// How an RPC was routed: `node`, `any`, `leader`, `all`.
pub const ROUTING: &str = "Cluster-Routing";
/// Milliseconds the caller is still willing to wait (relative; never a wall-clock time).
pub const TIMEOUT_MS: &str = "Cluster-Timeout-Ms";
/// Unique id of a request or event.
pub const ID: &str = "Cluster-Id";
/// Reply status: `ok` or `error`.
pub const STATUS: &str = "Cluster-Status";
/// Error kind of an error reply (`Error::kind`).
pub const ERROR_KIND: &str = "Cluster-Error-Kind";
/// Error message of an error reply.
pub const ERROR_MESSAGE: &str = "Cluster-Error";
/// Leader hint in a `not_leader` reply.
pub const LEADER: &str = "Cluster-Leader";
/// Epoch hint in a `not_leader` reply.
pub const EPOCH: &str = "Cluster-Epoch";
/// Node that answered a reply.
pub const REPLY_NODE: &str = "Cluster-Reply-Node";
/// Wall-clock time of an event in milliseconds since the Unix epoch (display only).
pub const TIME_MS: &str = "Cluster-Time-Ms";
