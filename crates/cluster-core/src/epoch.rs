//! Fencing tokens.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A leadership epoch: the fencing token of one leadership term.
///
/// Epochs of one election strictly increase with every acquisition and never repeat, also across
/// restarts of every node (they are derived from the durable, never-reused revision of the
/// lease record, see `docs/PROTOCOL.md`). Anything acting as leader carries its epoch and every
/// side effect checks it against the newest epoch it has seen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

/// The fencing token handed to hooks and side-effecting components.
pub type FencingToken = Epoch;

impl Epoch {
    /// The epoch before any leadership was ever granted.
    pub const ZERO: Epoch = Epoch(0);

    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
