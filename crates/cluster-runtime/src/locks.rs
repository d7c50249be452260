//! Lock handles of apps and of the platform.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::platform::Shared;
use crate::kv_lock::KvLock;
use cluster_core::error::{Error, Result};
use cluster_core::id::LockName;
use cluster_core::kv::Revision;
use cluster_core::lock::{Lock, LockHolder};
use cluster_core::wire::names::LockScope;

/// A distributed lock handle (app-private or platform-wide).
///
/// Each handle is its own owner: two handles of the same lock exclude each other, also on the
/// same node. The handle connects lazily once the platform has started.
pub struct DistLock {
    shared: Weak<Shared>,
    scope: LockScope,
    name: LockName,
    lock: OnceCell<KvLock>,
    handle_id: String,
}

impl std::fmt::Debug for DistLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistLock")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .finish()
    }
}

impl DistLock {
    pub(crate) fn new(shared: Weak<Shared>, scope: LockScope, name: LockName) -> Self {
        Self {
            shared,
            scope,
            name,
            lock: OnceCell::new(),
            handle_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn inner(&self) -> Result<&KvLock> {
        self.lock
            .get_or_try_init(|| async {
                let shared = self.shared.upgrade().ok_or(Error::ShuttingDown)?;
                let started = shared.started().await?;
                KvLock::new(
                    started.locks.clone(),
                    shared.names.lock_key(&self.scope, &self.name),
                    shared.node.clone(),
                    format!("{}/{}/{}", shared.node, shared.instance, self.handle_id),
                    shared.options.locks,
                    shared.clock.clone(),
                )
            })
            .await
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }
}

#[async_trait]
impl Lock for DistLock {
    async fn try_lock(&self) -> Result<bool> {
        self.inner().await?.try_lock().await
    }

    async fn lock(&self, timeout: Duration) -> Result<()> {
        self.inner().await?.lock(timeout).await
    }

    async fn unlock(&self) -> Result<()> {
        match self.lock.get() {
            Some(l) => l.unlock().await,
            None => Err(Error::LockNotHeld),
        }
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        self.inner().await?.holder().await
    }

    fn is_held(&self) -> bool {
        self.lock.get().is_some_and(|l| l.is_held())
    }

    fn fencing_token(&self) -> Option<Revision> {
        self.lock.get().and_then(|l| l.fencing_token())
    }
}

impl Shared {
    /// A platform-wide lock.
    pub(crate) fn platform_lock(self: &Arc<Self>, name: LockName) -> DistLock {
        DistLock::new(Arc::downgrade(self), LockScope::Platform, name)
    }
}
