//! Platform members.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::id::{AppName, NodeId, PlatformName};
use crate::labels::Labels;
use crate::mode::{Mode, Role};

/// One app running on a member, as advertised in the member's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberApp {
    /// The app's name.
    pub name: AppName,
    /// The app's mode.
    pub mode: Mode,
    /// Whether an instance of the app runs on the member now.
    #[serde(default)]
    pub running: bool,
    /// The instance's role (`stopped` when not running).
    #[serde(default = "stopped")]
    pub role: Role,
    /// The app's placement rules, opaque to the core runtime (interpreted by the platform's
    /// [`Planner`](crate::planner::Planner)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    /// Whether the instance's resources could take over at once (a standby whose replica
    /// caught up, see [`ActiveResource::standby_ready`](crate::resource::ActiveResource)).
    /// Records without the field (older nodes) are ready; omitted when ready.
    #[serde(default = "ready", skip_serializing_if = "is_ready")]
    pub ready: bool,
}

fn stopped() -> Role {
    Role::Stopped
}

fn ready() -> bool {
    true
}

fn is_ready(ready: &bool) -> bool {
    *ready
}

/// A live node of the platform, as seen in the membership view.
///
/// `joined_at` and `last_seen` are wall-clock times written by the member itself: they are for
/// display only and no decision is ever based on them (see ARCHITECTURE.md, "Time").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id.
    pub node_id: NodeId,
    /// The platform it belongs to.
    pub platform: PlatformName,
    /// A random id of the process incarnation (changes on every start).
    pub instance: String,
    /// The address other nodes and clients use to reach services on this node.
    pub address: String,
    /// The node's labels.
    pub labels: Labels,
    /// The apps registered on this node.
    pub apps: Vec<MemberApp>,
    /// Whether the node reports itself healthy.
    pub healthy: bool,
    /// When the node joined (member's wall clock; display only).
    pub joined_at: SystemTime,
    /// When the node last refreshed its record (member's wall clock; display only).
    pub last_seen: SystemTime,
    /// The platform software version the node runs (empty: not reported). Members with
    /// different versions mean a rolling upgrade: auto-rebalance pauses.
    pub version: String,
    /// The node is stopping gracefully (auto-rebalance pauses).
    pub shutting_down: bool,
    /// The node's measured load (`None`: not measured, no [`LoadProbe`] configured).
    ///
    /// [`LoadProbe`]: crate::load::LoadProbe
    pub load: Option<NodeLoad>,
    /// The member's host and lock file (`None`: not advertised, see
    /// [`HostLock`](crate::host::HostLock)).
    pub host: Option<crate::host::HostInfo>,
}

/// A node's load, as fractions in permille (integers, so records compare exactly): `cpu` is
/// the run-queue load per core (1000 = every core busy; may exceed 1000), `memory` and `disk`
/// the used share of the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// CPU load per core, ‰.
    #[serde(default)]
    pub cpu: u32,
    /// Memory in use, ‰.
    #[serde(default)]
    pub memory: u32,
    /// Disk in use, ‰.
    #[serde(default)]
    pub disk: u32,
}

impl NodeLoad {
    /// A load from fractions (`0.45` = 45 %), clamped to 0–10.
    pub fn from_fractions(cpu: f64, memory: f64, disk: f64) -> Self {
        let permille = |f: f64| {
            if f.is_finite() {
                (f.clamp(0.0, 10.0) * 1000.0).round() as u32
            } else {
                0
            }
        };
        Self {
            cpu: permille(cpu),
            memory: permille(memory),
            disk: permille(disk),
        }
    }

    /// `(name, fraction)` of each dimension: `cpu`, `memory`, `disk`.
    pub fn fractions(&self) -> [(&'static str, f64); 3] {
        [
            ("cpu", f64::from(self.cpu) / 1000.0),
            ("memory", f64::from(self.memory) / 1000.0),
            ("disk", f64::from(self.disk) / 1000.0),
        ]
    }
}

impl Member {
    /// Whether the member runs an app of that name.
    pub fn runs(&self, app: &AppName) -> bool {
        self.apps.iter().any(|a| &a.name == app)
    }
}
