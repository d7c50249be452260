//! The lease record stored under an election's key.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::NodeId;

/// Version of the lease record format.
pub(crate) const LEASE_RECORD_VERSION: u32 = 1;

/// The JSON value of a lease key (see `docs/PROTOCOL.md`).
///
/// The record holds no timestamps that anyone acts on: expiry is the store's TTL, and the epoch
/// is the revision at which the term began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Format version (currently 1).
    pub v: u32,
    /// The holder's node id.
    pub node: NodeId,
    /// The holder's process instance.
    pub instance: String,
    /// The term's epoch: the revision of the write that started the term (0 in the write that
    /// starts it, since the revision is only known afterwards).
    pub epoch: u64,
    /// When set, the holder is handing leadership to this node: only it may claim the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_to: Option<NodeId>,
}

impl LeaseRecord {
    /// Encodes the record as JSON.
    pub fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(format!("encode lease record: {e}")))
    }

    /// Decodes and checks a record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let rec: LeaseRecord = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("lease record: {e}")))?;
        if rec.v != LEASE_RECORD_VERSION {
            return Err(Error::Malformed(format!(
                "lease record version {} (this node understands {LEASE_RECORD_VERSION})",
                rec.v
            )));
        }
        Ok(rec)
    }
}
