//! The per-app migration lock: a [`KvLock`] under `migration.{app}` in the locks bucket, held
//! by whoever drives a migration of the app (an operator's move, a drain, an auto-rebalance
//! step) for its whole duration. A second migration of the same app fails at once with
//! `LockHeld` naming the holder; it does not wait.
//!
//! Fencing: a move record carries the lock's fencing token (the acquisition revision). The
//! controller and the agents act only on a move whose token is the current holder's, so a move
//! written by a holder whose lock expired (it crashed or hung) is ignored and cleaned up.

use crate::kv_lock::KvLock;
use crate::platform::{Shared, Started};
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;
use cluster_core::lock::Lock;

/// Key of an app's migration lock in the locks bucket (outside the `app.*`/`platform.*`
/// namespaces of user locks).
pub(crate) fn migration_lock_key(app: &AppName) -> String {
    format!("migration.{app}")
}

/// A held migration lock (renewed in the background until released or dropped; a dropped
/// handle stops renewing and the lock expires after its TTL).
pub(crate) struct MigrationLock {
    lock: KvLock,
}

fn handle(shared: &Shared, started: &Started, app: &AppName, what: &str) -> Result<KvLock> {
    KvLock::new(
        started.locks.clone(),
        migration_lock_key(app),
        shared.node.clone(),
        format!(
            "{}/{}/{what}/{}",
            shared.node,
            shared.instance,
            uuid::Uuid::new_v4().simple()
        ),
        shared.options.locks,
        shared.clock.clone(),
    )
}

impl MigrationLock {
    /// Takes the migration lock of `app` for operation `what` (`move`, `drain`, `rebalance`),
    /// or fails with `LockHeld` naming the current holder.
    pub(crate) async fn acquire(
        shared: &Shared,
        started: &Started,
        app: &AppName,
        what: &str,
    ) -> Result<Self> {
        let lock = handle(shared, started, app, what)?;
        if lock.try_lock().await? {
            return Ok(Self { lock });
        }
        let holder = lock.holder().await?;
        Err(Error::LockHeld {
            holder: Some(match holder {
                Some(h) => format!(
                    "{} (another migration of {app} is in progress; retry when it ended)",
                    h.owner
                ),
                None => format!("another migration of {app} (just released; retry)"),
            }),
        })
    }

    /// Like [`acquire`](Self::acquire), `None` when held elsewhere.
    pub(crate) async fn try_acquire(
        shared: &Shared,
        started: &Started,
        app: &AppName,
        what: &str,
    ) -> Result<Option<Self>> {
        match Self::acquire(shared, started, app, what).await {
            Ok(l) => Ok(Some(l)),
            Err(Error::LockHeld { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The fencing token (acquisition revision) to stamp on move records.
    pub(crate) fn fence(&self) -> u64 {
        self.lock.fencing_token().map_or(0, |r| r.0)
    }

    /// Releases the lock (best effort: an expired lock is already free).
    pub(crate) async fn release(self) {
        let _ = self.lock.unlock().await;
    }
}

/// The fencing token of the current holder of `app`'s migration lock (`None`: free).
pub(crate) async fn current_fence(
    shared: &Shared,
    started: &Started,
    app: &AppName,
) -> Result<Option<u64>> {
    let lock = handle(shared, started, app, "probe")?;
    Ok(lock.holder().await?.map(|h| h.acquired_revision.0))
}

/// Whether a move stamped with `fence` is still covered by the migration lock (0: written by a
/// node without migration locks, always accepted).
pub(crate) async fn move_is_current(
    shared: &Shared,
    started: &Started,
    app: &AppName,
    fence: u64,
) -> Result<bool> {
    if fence == 0 {
        return Ok(true);
    }
    Ok(current_fence(shared, started, app).await? == Some(fence))
}
