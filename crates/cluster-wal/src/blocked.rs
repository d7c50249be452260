//! The promotion block: a node whose promotion failed for a reason that repeats (its replica does
//! not match the log, a corrupt or unreadable file) must not win the lease again and fail the
//! same way, forever. The block is reported to the runtime
//! (`ActiveResource::leadership_blocked`: the node withdraws its candidacy), in
//! [`crate::WalStatus`], as an audit record and as the `gc_wal_promotion_blocked` gauge. It is
//! lifted when the cause changes: the standby restored a snapshot (a re-sync), or an operator
//! cleared it ([`crate::WalDb::clear_promotion_block`], `cluster wal resync`).

use std::sync::Mutex;

use crate::error::{ErrorKind, WalError};

/// Why and since when promotion is blocked on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionBlock {
    /// The failure that blocked it.
    pub reason: String,
    /// The epoch whose promotion failed.
    pub epoch: u64,
    /// Wall clock of the failure, µs since the Unix epoch.
    pub since_us: u64,
    /// Snapshot restores of the standby when the block was set: one more lifts it.
    pub(crate) restores: u64,
}

/// Whether a failed promotion would fail the same way on the next attempt.
pub(crate) fn repeats(e: &WalError) -> bool {
    matches!(e.kind(), ErrorKind::Resync | ErrorKind::Fatal)
}

/// The block state of one database replica.
#[derive(Debug, Default)]
pub(crate) struct Blocker(Mutex<Option<PromotionBlock>>);

impl Blocker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PromotionBlock>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the block (replacing an older one).
    pub(crate) fn set(&self, block: PromotionBlock) {
        *self.lock() = Some(block);
    }

    /// The current block, after lifting it when the standby restored a snapshot since (given
    /// `restores`, the standby's restore count, when it runs). Returns the lifted block too.
    pub(crate) fn current(
        &self,
        restores: Option<u64>,
    ) -> (Option<PromotionBlock>, Option<PromotionBlock>) {
        let mut g = self.lock();
        match (&*g, restores) {
            (Some(b), Some(r)) if r > b.restores => (None, g.take()),
            _ => (g.clone(), None),
        }
    }

    /// Lifts the block; returns it when there was one.
    pub(crate) fn clear(&self) -> Option<PromotionBlock> {
        self.lock().take()
    }
}
