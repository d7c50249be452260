//! Platform APIs of auto-rebalance: status, cancel, approvals, the cluster-wide settings and
//! the `OnRebalance` callback. Each reads or writes a record of the placement bucket
//! (`wire::rebalance`); the controller acts on them.

use futures::StreamExt;
use tracing::info;

use super::auto::settings;
use crate::platform::Platform;
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;
use cluster_core::kv::WatchOp;
use cluster_core::wire::placement::{PLACEMENT_RECORD_VERSION, decode, encode};
use cluster_core::wire::rebalance::{
    AUTO_REBALANCE_KEY, ApprovalRecord, AutoRebalanceConfig, CancelRecord, MIGRATION_POLICY_KEY,
    MigrationPolicy, PlacementConfig, REBALANCE_CANCEL_KEY, REBALANCE_STATUS_KEY, RebalanceStatus,
    approve_key,
};

impl Platform {
    /// The auto-rebalance status written by the placement controller (default before its
    /// first write).
    pub async fn rebalance_status(&self) -> Result<RebalanceStatus> {
        let started = self.shared().started().await?;
        match started.placement.get(REBALANCE_STATUS_KEY).await? {
            Some(e) => decode("rebalance status", &e.value),
            None => Ok(RebalanceStatus::default()),
        }
    }

    /// Cancels the running rebalance: no further migrations start (those in flight finish).
    /// Returns the status as it was when the request was written.
    pub async fn cancel_rebalance(&self) -> Result<RebalanceStatus> {
        let started = self.shared().started().await?;
        let record = CancelRecord {
            v: PLACEMENT_RECORD_VERSION,
            by: self.node_id().clone(),
        };
        started
            .placement
            .put(REBALANCE_CANCEL_KEY, encode(&record)?)
            .await?;
        info!("rebalance cancel requested");
        self.rebalance_status().await
    }

    /// Approves the next migration of `app` (policy `require_approval`).
    pub async fn approve_migration(&self, app: &str) -> Result<()> {
        let app = AppName::new(app)?;
        let started = self.shared().started().await?;
        let known = started
            .membership
            .borrow()
            .values()
            .any(|m| m.apps.iter().any(|a| a.name == app));
        if !known {
            return Err(Error::AppNotFound(format!(
                "{app}: no member runs or declares it; nothing to approve"
            )));
        }
        let record = ApprovalRecord {
            v: PLACEMENT_RECORD_VERSION,
            by: self.node_id().clone(),
        };
        started
            .placement
            .put(&approve_key(&app), encode(&record)?)
            .await?;
        info!(%app, "migration approved");
        Ok(())
    }

    /// The effective cluster-wide settings (bucket records, else this node's builder options).
    pub async fn placement_config(&self) -> Result<PlacementConfig> {
        let started = self.shared().started().await?;
        let (auto_rebalance, migration_policy) =
            settings(self.shared(), &*started.placement).await?;
        Ok(PlacementConfig {
            auto_rebalance,
            migration_policy,
        })
    }

    /// Stores the auto-rebalance configuration cluster-wide (validated first).
    pub async fn set_auto_rebalance(&self, config: &AutoRebalanceConfig) -> Result<()> {
        config.validate(&crate::schedule::Syntax)?;
        let started = self.shared().started().await?;
        started
            .placement
            .put(AUTO_REBALANCE_KEY, encode(config)?)
            .await?;
        Ok(())
    }

    /// Stores the migration policy cluster-wide (validated first).
    pub async fn set_migration_policy(&self, policy: &MigrationPolicy) -> Result<()> {
        policy.validate(&crate::schedule::Syntax)?;
        let started = self.shared().started().await?;
        started
            .placement
            .put(MIGRATION_POLICY_KEY, encode(policy)?)
            .await?;
        Ok(())
    }

    /// Changes one setting from text: `auto-rebalance.<field>` or `migration-policy.<field>`
    /// (`cluster config set`). Returns the settings now in force.
    pub async fn set_placement_config(&self, key: &str, value: &str) -> Result<PlacementConfig> {
        let mut config = self.placement_config().await?;
        if let Some(field) = key.strip_prefix("auto-rebalance.") {
            config
                .auto_rebalance
                .set(field, value, &crate::schedule::Syntax)?;
            self.set_auto_rebalance(&config.auto_rebalance).await?;
        } else if let Some(field) = key.strip_prefix("migration-policy.") {
            config
                .migration_policy
                .set(field, value, &crate::schedule::Syntax)?;
            self.set_migration_policy(&config.migration_policy).await?;
        } else {
            return Err(Error::InvalidArgument(format!(
                "unknown setting {key:?}: expected auto-rebalance.<field> or \
                 migration-policy.<field>"
            )));
        }
        info!(key, value, "placement setting changed");
        Ok(config)
    }

    /// The spec's `OnRebalance`: calls `callback` on this node with the controller's status
    /// every time it changes (run started, migration started or completed, failure, cancel,
    /// completion). Runs until the platform stops.
    pub async fn on_rebalance(
        &self,
        callback: impl Fn(&RebalanceStatus) + Send + Sync + 'static,
    ) -> Result<()> {
        let started = self.shared().started().await?;
        let mut watch = started.placement.watch(REBALANCE_STATUS_KEY).await?;
        let shutdown = self.shared().shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = watch.next() => match ev {
                        Some(ev) => {
                            if ev.key == REBALANCE_STATUS_KEY
                                && ev.op == WatchOp::Put
                                && let Ok(status) =
                                    decode::<RebalanceStatus>("rebalance status", &ev.value)
                            {
                                callback(&status);
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        self.shared().track(task.abort_handle());
        Ok(())
    }
}
