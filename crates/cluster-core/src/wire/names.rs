//! Bucket names, keys and subjects.

use crate::id::{AppName, LockName, NodeId, PlatformName};
use crate::wire::admin::AdminClass;

/// Root token of every subject the platform uses.
pub const SUBJECT_ROOT: &str = "cluster";

/// Builds every name of one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    platform: PlatformName,
}

/// Whose lock a lock key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// A lock private to one app.
    App(AppName),
    /// A platform-wide lock.
    Platform,
}

impl Names {
    /// Names of `platform`.
    pub fn new(platform: PlatformName) -> Self {
        Self { platform }
    }

    /// The platform.
    pub fn platform(&self) -> &PlatformName {
        &self.platform
    }

    /// Bucket of member records (`{P}_members`), one key per node, with per-key TTL.
    pub fn members_bucket(&self) -> String {
        format!("{}_members", self.platform)
    }

    /// Bucket of election leases (`{P}_election`), one key per Singleton app, with per-key TTL.
    pub fn election_bucket(&self) -> String {
        format!("{}_election", self.platform)
    }

    /// Bucket of locks (`{P}_locks`) with per-key TTL.
    pub fn locks_bucket(&self) -> String {
        format!("{}_locks", self.platform)
    }

    /// Bucket of placement records (`{P}_placement`): assignment, cordon, drain, move, label
    /// overrides. No TTL.
    pub fn placement_bucket(&self) -> String {
        format!("{}_placement", self.platform)
    }

    /// Key of the placement controller's lease in the election bucket.
    pub fn controller_lease_key(&self) -> String {
        "controller.placement".to_owned()
    }

    /// An app's private KV bucket (`{P}_app_{app}`).
    pub fn app_bucket(&self, app: &AppName) -> String {
        format!("{}_app_{}", self.platform, app)
    }

    /// Key of a member record: the node id.
    pub fn member_key(&self, node: &NodeId) -> String {
        node.to_string()
    }

    /// Key of an app's election lease: `lease.{app}`.
    pub fn lease_key(&self, app: &AppName) -> String {
        format!("lease.{app}")
    }

    /// Key of a lock: `app.{app}.{lock}` or `platform.{lock}`.
    pub fn lock_key(&self, scope: &LockScope, lock: &LockName) -> String {
        match scope {
            LockScope::App(app) => format!("app.{app}.{lock}"),
            LockScope::Platform => format!("platform.{lock}"),
        }
    }

    fn app_prefix(&self, app: &AppName) -> String {
        format!("{SUBJECT_ROOT}.{}.app.{app}", self.platform)
    }

    /// RPC subject of one app instance: `cluster.{P}.app.{app}.rpc.{node}`.
    pub fn rpc_node(&self, app: &AppName, node: &NodeId) -> String {
        format!("{}.rpc.{node}", self.app_prefix(app))
    }

    /// RPC subject served by any instance (queue group [`Names::RPC_QUEUE`]):
    /// `cluster.{P}.app.{app}.rpc._any`.
    pub fn rpc_any(&self, app: &AppName) -> String {
        format!("{}.rpc._any", self.app_prefix(app))
    }

    /// RPC broadcast subject served by every instance: `cluster.{P}.app.{app}.rpc._all`.
    pub fn rpc_all(&self, app: &AppName) -> String {
        format!("{}.rpc._all", self.app_prefix(app))
    }

    /// Queue group of `rpc._any` subscribers.
    pub const RPC_QUEUE: &'static str = "rpc";

    /// Subject of an app event: `cluster.{P}.app.{app}.ev.{subject}`.
    pub fn app_event(&self, app: &AppName, subject: &str) -> String {
        format!("{}.ev.{subject}", self.app_prefix(app))
    }

    /// Subject of a platform-wide event: `cluster.{P}.ev.{subject}`.
    pub fn platform_event(&self, subject: &str) -> String {
        format!("{SUBJECT_ROOT}.{}.ev.{subject}", self.platform)
    }

    /// Admin subject of one node: `cluster.{P}.admin.{node}` (platform-level admin requests,
    /// see `docs/protocol/admin.md`).
    pub fn admin_node(&self, node: &NodeId) -> String {
        format!("{SUBJECT_ROOT}.{}.admin.{node}", self.platform)
    }

    /// Admin subject served by every node (broadcast): `cluster.{P}.admin._all`.
    pub fn admin_all(&self) -> String {
        format!("{SUBJECT_ROOT}.{}.admin._all", self.platform)
    }

    /// Admin protocol v2 subject of one node for requests of `class`:
    /// `cluster.{P}.admin.{read|write}.{node}`.
    pub fn admin_class_node(&self, class: AdminClass, node: &NodeId) -> String {
        format!(
            "{SUBJECT_ROOT}.{}.admin.{}.{node}",
            self.platform,
            class.as_str()
        )
    }

    /// Admin protocol v2 broadcast subject for requests of `class`:
    /// `cluster.{P}.admin.{read|write}._all`.
    pub fn admin_class_all(&self, class: AdminClass) -> String {
        format!(
            "{SUBJECT_ROOT}.{}.admin.{}._all",
            self.platform,
            class.as_str()
        )
    }

    /// Strips the app-event prefix, giving the event's own subject.
    pub fn app_event_suffix<'a>(&self, app: &AppName, subject: &'a str) -> Option<&'a str> {
        let prefix = format!("{}.ev.", self.app_prefix(app));
        subject.strip_prefix(prefix.as_str())
    }

    /// Strips the platform-event prefix.
    pub fn platform_event_suffix<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let prefix = format!("{SUBJECT_ROOT}.{}.ev.", self.platform);
        subject.strip_prefix(prefix.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        let n = Names::new("prod".parse().unwrap());
        let app: AppName = "cache".parse().unwrap();
        let node: NodeId = "n1".parse().unwrap();
        assert_eq!(n.members_bucket(), "prod_members");
        assert_eq!(n.app_bucket(&app), "prod_app_cache");
        assert_eq!(n.lease_key(&app), "lease.cache");
        assert_eq!(n.rpc_node(&app, &node), "cluster.prod.app.cache.rpc.n1");
        assert_eq!(
            n.app_event(&app, "user.created"),
            "cluster.prod.app.cache.ev.user.created"
        );
        assert_eq!(
            n.app_event_suffix(&app, "cluster.prod.app.cache.ev.user.created"),
            Some("user.created")
        );
        assert_eq!(
            n.lock_key(&LockScope::App(app), &"m".parse().unwrap()),
            "app.cache.m"
        );
        assert_eq!(
            n.admin_class_node(AdminClass::Read, &node),
            "cluster.prod.admin.read.n1"
        );
        assert_eq!(
            n.admin_class_all(AdminClass::Write),
            "cluster.prod.admin.write._all"
        );
    }
}
