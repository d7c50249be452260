//! Platform and app options.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::kv_lock::LockOptions;
use cluster_core::election::ElectionTiming;
use cluster_core::error::{Error, Result};

/// Options of a platform node. Every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformOptions {
    /// Election timing of Singleton apps (default: TTL 15 s, renew 2 s, ε 0.1, cooldown 5 s).
    pub election: ElectionTiming,
    /// Lifetime of the member record after each refresh (default 10 s). A crashed node leaves
    /// the membership of every other node within this time plus one event delivery.
    pub member_ttl: Duration,
    /// How often the member record is refreshed (default 2 s; at most a third of the TTL).
    pub member_refresh: Duration,
    /// Lock TTL and margin (default: TTL 15 s, ε 0.1).
    pub locks: LockOptions,
    /// Default RPC timeout (default 5 s).
    pub rpc_timeout: Duration,
    /// Upper bound of a graceful shutdown before remaining work is abandoned (default 30 s).
    pub shutdown_timeout: Duration,
    /// Replicas of every bucket (1 on a single server, 3 on a cluster; default 1).
    pub replicas: usize,
    /// Address advertised in the member record (default: empty).
    pub address: String,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            election: ElectionTiming::default(),
            member_ttl: Duration::from_secs(10),
            member_refresh: Duration::from_secs(2),
            locks: LockOptions::default(),
            rpc_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            replicas: 1,
            address: String::new(),
        }
    }
}

impl PlatformOptions {
    /// Fast timing for tests and demos: election [`ElectionTiming::fast`], member TTL 3 s,
    /// refresh 500 ms, lock TTL 3 s.
    pub fn fast() -> Self {
        Self {
            election: ElectionTiming::fast(),
            member_ttl: Duration::from_secs(3),
            member_refresh: Duration::from_millis(500),
            locks: LockOptions {
                ttl: Duration::from_secs(3),
                safety_margin: 0.15,
            },
            rpc_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            ..Self::default()
        }
    }

    /// Checks every rule, listing all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(e) = self.election.validate() {
            problems.push(format!("election: {e}"));
        }
        if self.member_ttl < Duration::from_secs(1) {
            problems.push(format!(
                "member_ttl {:?} must be at least 1s",
                self.member_ttl
            ));
        }
        if self.member_refresh.is_zero() || self.member_refresh * 3 > self.member_ttl {
            problems.push(format!(
                "member_refresh {:?} must be > 0 and at most a third of member_ttl {:?}",
                self.member_refresh, self.member_ttl
            ));
        }
        if self.rpc_timeout.is_zero() {
            problems.push("rpc_timeout must be > 0".to_owned());
        }
        if self.replicas == 0 || self.replicas > 5 {
            problems.push(format!(
                "replicas {} must be between 1 and 5",
                self.replicas
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(problems.join("; ")))
        }
    }
}

/// The lifecycle hooks of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookKind {
    /// This instance became leader.
    OnActive,
    /// This instance stopped being leader (or must undo a failed activation).
    OnPassive,
    /// The instance starts on this node.
    OnStart,
    /// The instance stops on this node.
    OnStop,
    /// The observed leader changed.
    OnLeaderChange,
    /// A node joined the platform.
    OnMemberJoin,
    /// A node left the platform (gracefully or by lease expiry).
    OnMemberLeave,
    /// The app's health on this node changed.
    OnHealthChange,
    /// A migration of the app is about to start on this node (may reject it).
    OnMigrationStart,
    /// A migration of the app completed on this node.
    OnMigrationComplete,
    /// The app cannot be placed anywhere (no eligible node).
    OnPlacementInvalid,
    /// Ring partitions were assigned to this node.
    OnOwn,
    /// Ring partitions are taken away from this node.
    OnRelease,
}

impl HookKind {
    /// The hook's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::OnActive => "on_active",
            HookKind::OnPassive => "on_passive",
            HookKind::OnStart => "on_start",
            HookKind::OnStop => "on_stop",
            HookKind::OnLeaderChange => "on_leader_change",
            HookKind::OnMemberJoin => "on_member_join",
            HookKind::OnMemberLeave => "on_member_leave",
            HookKind::OnHealthChange => "on_health_change",
            HookKind::OnMigrationStart => "on_migration_start",
            HookKind::OnMigrationComplete => "on_migration_complete",
            HookKind::OnPlacementInvalid => "on_placement_invalid",
            HookKind::OnOwn => "on_own",
            HookKind::OnRelease => "on_release",
        }
    }
}

/// Per-app options.
#[derive(Debug, Clone, PartialEq)]
pub struct AppOptions {
    /// Timeout of every hook without its own (default 30 s).
    pub hook_timeout: Duration,
    /// Per-hook timeouts.
    pub hook_timeouts: BTreeMap<HookKind, Duration>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            hook_timeout: Duration::from_secs(30),
            hook_timeouts: BTreeMap::new(),
        }
    }
}

impl AppOptions {
    /// The timeout of `hook`.
    pub fn timeout(&self, hook: HookKind) -> Duration {
        self.hook_timeouts
            .get(&hook)
            .copied()
            .unwrap_or(self.hook_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_fast_options_are_valid() {
        PlatformOptions::default().validate().ok();
        assert!(PlatformOptions::default().validate().is_ok());
        assert!(PlatformOptions::fast().validate().is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let o = PlatformOptions {
            member_refresh: Duration::from_secs(9),
            replicas: 0,
            ..PlatformOptions::default()
        };
        let msg = o.validate().unwrap_err().to_string();
        assert!(
            msg.contains("member_refresh") && msg.contains("replicas"),
            "{msg}"
        );
    }
}
