//! The member record stored in the members bucket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{NodeId, PlatformName};
use crate::labels::Labels;
use crate::member::{Member, MemberApp};

/// Version of the member record format.
pub const MEMBER_RECORD_VERSION: u32 = 1;

/// JSON value of a member key (see `docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Format version.
    pub v: u32,
    /// Node id.
    pub node: NodeId,
    /// Platform name.
    pub platform: PlatformName,
    /// Process incarnation.
    pub instance: String,
    /// Advertised address.
    pub address: String,
    /// Labels.
    pub labels: Labels,
    /// Registered apps.
    pub apps: Vec<MemberApp>,
    /// Self-reported health.
    pub healthy: bool,
    /// Join time, ms since the Unix epoch (writer's clock; display only).
    pub joined_at_ms: u64,
    /// Last refresh, ms since the Unix epoch (writer's clock; display only).
    pub last_seen_ms: u64,
    /// Software version of the node (optional; empty when not reported).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The node is stopping gracefully (optional).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shutting_down: bool,
    /// Measured load, ‰ (optional; absent when the node measures none or runs an older
    /// version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::member::NodeLoad>,
    /// Where the writer runs (optional; absent for platforms built without a host lock and
    /// for older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::host::HostInfo>,
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl MemberRecord {
    /// The record describing `member`.
    pub fn from_member(member: &Member) -> Self {
        Self {
            v: MEMBER_RECORD_VERSION,
            node: member.node_id.clone(),
            platform: member.platform.clone(),
            instance: member.instance.clone(),
            address: member.address.clone(),
            labels: member.labels.clone(),
            apps: member.apps.clone(),
            healthy: member.healthy,
            joined_at_ms: to_ms(member.joined_at),
            last_seen_ms: to_ms(member.last_seen),
            version: member.version.clone(),
            shutting_down: member.shutting_down,
            load: member.load,
            host: member.host.clone(),
        }
    }

    /// The member this record describes.
    pub fn into_member(self) -> Member {
        Member {
            node_id: self.node,
            platform: self.platform,
            instance: self.instance,
            address: self.address,
            labels: self.labels,
            apps: self.apps,
            healthy: self.healthy,
            joined_at: from_ms(self.joined_at_ms),
            last_seen: from_ms(self.last_seen_ms),
            version: self.version,
            shutting_down: self.shutting_down,
            load: self.load,
            host: self.host,
        }
    }

    /// Encodes as JSON.
    pub fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(format!("encode member record: {e}")))
    }

    /// Decodes and checks the version.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let rec: MemberRecord = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("member record: {e}")))?;
        if rec.v != MEMBER_RECORD_VERSION {
            return Err(Error::Malformed(format!(
                "member record version {} (this node understands {MEMBER_RECORD_VERSION})",
                rec.v
            )));
        }
        Ok(rec)
    }
}
