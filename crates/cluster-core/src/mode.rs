//! App modes and instance roles.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How many instances of an app run, and how they cooperate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mode {
    /// Exactly one active instance (leader); the others are warm standbys.
    Singleton,
    /// An active instance on every eligible node (also called Pool).
    Spread,
    /// Active instances on exactly `n` eligible nodes.
    Replicas {
        /// Number of instances.
        n: u32,
    },
    /// Active on every eligible node, with `partitions` hash partitions distributed among them.
    Ring {
        /// Number of partitions (fixed for the app's lifetime).
        partitions: u32,
    },
}

impl Mode {
    /// `Pool` is an alias of [`Mode::Spread`].
    pub const POOL: Mode = Mode::Spread;

    /// Whether the mode elects a leader.
    pub fn is_singleton(&self) -> bool {
        matches!(self, Mode::Singleton)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Singleton => f.write_str("singleton"),
            Mode::Spread => f.write_str("spread"),
            Mode::Replicas { n } => write!(f, "replicas({n})"),
            Mode::Ring { partitions } => write!(f, "ring({partitions})"),
        }
    }
}

/// The role of one instance of an app on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The elected active instance of a Singleton app.
    Leader,
    /// A passive instance of a Singleton app.
    Standby,
    /// An instance of a Spread, Replicas or Ring app.
    Active,
    /// Not running on this node (not started, stopped, or shutting down).
    Stopped,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
            Role::Active => "active",
            Role::Stopped => "stopped",
        })
    }
}
