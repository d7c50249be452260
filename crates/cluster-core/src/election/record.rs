//! The records stored in the election bucket: the lease of each election and the bucket-wide
//! epoch floor.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::epoch::Epoch;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::kv::Revision;

/// Version of the lease record format.
pub const LEASE_RECORD_VERSION: u32 = 1;

/// Version of the epoch floor record format.
pub const FLOOR_RECORD_VERSION: u32 = 1;

/// Key of the epoch floor record in the election bucket (shared by every election in it).
pub const FLOOR_KEY: &str = "epoch-floor";

/// The largest epoch floor accepted (2^53): a larger one is malformed. Keeps `floor + revision`
/// far from `u64::MAX` and exact in JSON tools that use doubles.
pub const MAX_FLOOR: u64 = 1 << 53;

/// The JSON value of a lease key (see `docs/PROTOCOL.md`).
///
/// The record holds no timestamps that anyone acts on: expiry is the store's TTL, and the epoch
/// comes from the store (`floor + revision` of the write that started the term). The `epoch`
/// field is only a hint, trusted only when consistent with the store ([`LeaseRecord::epoch_at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Format version (currently 1).
    pub v: u32,
    /// The holder's node id.
    pub node: NodeId,
    /// The holder's process instance.
    pub instance: String,
    /// The term's epoch as the holder knows it: 0 in the write that starts the term (the
    /// revision is only known afterwards), `floor + revision` of that write in renewals.
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

    /// The term's epoch of this record stored at `revision` under epoch floor `floor`, or
    /// `None` when the record's `epoch` hint is inconsistent with the store: a term's epoch is
    /// `floor + revision` of the write that started it, so a hint above `floor + revision` of
    /// the record itself cannot be true. A hint of 0 (the write that starts a term) yields
    /// `floor + revision`.
    pub fn epoch_at(&self, revision: Revision, floor: u64) -> Option<Epoch> {
        let ceiling = floor.min(MAX_FLOOR).saturating_add(revision.0);
        match self.epoch {
            0 => Some(Epoch(ceiling)),
            e if e <= ceiling => Some(Epoch(e)),
            _ => None,
        }
    }
}

/// The JSON value of [`FLOOR_KEY`]: every epoch of the bucket is above `floor`.
///
/// Revisions restart at 1 when the store loses the bucket; the floor, raised by compare-and-set
/// to the highest epoch a daemon has seen, keeps epochs (`floor + revision`) increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorRecord {
    /// Format version (currently 1).
    pub v: u32,
    /// The floor (at most [`MAX_FLOOR`]).
    pub floor: u64,
}

impl FloorRecord {
    /// A current-version record.
    pub fn new(floor: u64) -> Self {
        Self {
            v: FLOOR_RECORD_VERSION,
            floor,
        }
    }

    /// Encodes the record as JSON.
    pub fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(format!("encode epoch floor: {e}")))
    }

    /// Decodes and checks a record (version and bound).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let rec: FloorRecord = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("epoch floor: {e}")))?;
        if rec.v != FLOOR_RECORD_VERSION {
            return Err(Error::Malformed(format!(
                "epoch floor version {} (this node understands {FLOOR_RECORD_VERSION})",
                rec.v
            )));
        }
        if rec.floor > MAX_FLOOR {
            return Err(Error::Malformed(format!(
                "epoch floor {} above the bound {MAX_FLOOR}",
                rec.floor
            )));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64) -> LeaseRecord {
        LeaseRecord {
            v: LEASE_RECORD_VERSION,
            node: NodeId::new("n1").expect("node id"),
            instance: "i".to_owned(),
            epoch,
            handoff_to: None,
        }
    }

    #[test]
    fn epoch_comes_from_floor_and_revision() {
        assert_eq!(record(0).epoch_at(Revision(7), 0), Some(Epoch(7)));
        assert_eq!(record(0).epoch_at(Revision(7), 100), Some(Epoch(107)));
        assert_eq!(record(5).epoch_at(Revision(7), 0), Some(Epoch(5)));
        assert_eq!(record(107).epoch_at(Revision(9), 100), Some(Epoch(107)));
    }

    #[test]
    fn an_epoch_hint_above_the_store_is_inconsistent() {
        assert_eq!(record(999_999).epoch_at(Revision(50), 0), None);
        assert_eq!(record(u64::MAX).epoch_at(Revision(1), u64::MAX), None);
        assert_eq!(
            record(0).epoch_at(Revision(u64::MAX), u64::MAX),
            Some(Epoch(u64::MAX))
        );
        assert_eq!(record(8).epoch_at(Revision(7), 0), None);
    }

    #[test]
    fn floor_is_bounded_and_versioned() {
        let ok = FloorRecord::new(MAX_FLOOR).encode().expect("encode");
        assert_eq!(FloorRecord::decode(&ok).expect("decode").floor, MAX_FLOOR);
        assert!(FloorRecord::decode(br#"{"v":1,"floor":9007199254740993}"#).is_err());
        assert!(FloorRecord::decode(br#"{"v":2,"floor":1}"#).is_err());
        assert!(FloorRecord::decode(b"not json").is_err());
        assert!(FloorRecord::decode(br#"{"v":1}"#).is_err());
    }
}
