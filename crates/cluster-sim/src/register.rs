//! The fenced register: the checker's model of an external resource fenced by epochs.

use cluster_core::Epoch;

/// One write presented to the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The writer's fencing token.
    pub epoch: Epoch,
    /// The writer's node.
    pub node: String,
    /// The writer's sequence number.
    pub n: u64,
}

/// An append-only register that refuses writes below the highest epoch it accepted.
#[derive(Debug, Default)]
pub struct Register {
    accepted: Vec<Write>,
    refused: u64,
    /// Planted bug: accept every write.
    unfenced: bool,
}

impl Register {
    /// A register; `unfenced` plants the bug of skipping the epoch check.
    pub fn new(unfenced: bool) -> Self {
        Self {
            unfenced,
            ..Self::default()
        }
    }

    /// Presents `w`; returns whether it was accepted.
    pub fn append(&mut self, w: Write) -> bool {
        let highest = self.accepted.last().map(|a| a.epoch);
        if !self.unfenced && highest.is_some_and(|h| w.epoch < h) {
            self.refused += 1;
            return false;
        }
        self.accepted.push(w);
        true
    }

    /// Every accepted write, in order.
    pub fn accepted(&self) -> &[Write] {
        &self.accepted
    }

    /// How many writes were refused.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}
