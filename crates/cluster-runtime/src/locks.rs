//! Lock handles of apps and of the platform.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::kv_lock::KvLock;
use crate::node::NodeContext;
use cluster_core::error::{Error, Result};
use cluster_core::id::LockName;
use cluster_core::kv::{KvBucket, Revision};
use cluster_core::lock::{Lock, LockHolder};
use cluster_core::wire::names::LockScope;

/// Where a lock handle finds the platform once it has started: the node's services and the
/// platform's locks bucket (implemented by the platform's state).
#[async_trait]
pub(crate) trait LockHome: Send + Sync {
    /// The node's services.
    fn node(&self) -> &NodeContext;
    /// The locks bucket, once the platform has started (`ShuttingDown` if it never will).
    async fn locks_bucket(&self) -> Result<Arc<dyn KvBucket>>;
}

/// A distributed lock handle (app-private or platform-wide).
///
/// Each handle is its own owner: two handles of the same lock exclude each other, also on the
/// same node. The handle connects lazily once the platform has started.
pub struct DistLock {
    home: Weak<dyn LockHome>,
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
    pub(crate) fn new(home: Weak<dyn LockHome>, scope: LockScope, name: LockName) -> Self {
        Self {
            home,
            scope,
            name,
            lock: OnceCell::new(),
            handle_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn inner(&self) -> Result<&KvLock> {
        self.lock
            .get_or_try_init(|| async {
                let home = self.home.upgrade().ok_or(Error::ShuttingDown)?;
                let bucket = home.locks_bucket().await?;
                let node = home.node();
                KvLock::new(
                    bucket,
                    node.names.lock_key(&self.scope, &self.name),
                    node.node.clone(),
                    format!("{}/{}/{}", node.node, node.instance, self.handle_id),
                    node.options.locks,
                    node.clock.clone(),
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
