//! Apps: isolated components with a mode, hooks, handlers and private data.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::events::Events;
use super::hooks::{BoxError, Hook, HookContext, HookWith, boxed_hook, boxed_hook_with};
use super::kv::AppKv;
use super::leadership::LeaderCommand;
use super::locks::DistLock;
use super::notify::Notification;
use super::options::{AppOptions, HookKind};
use super::platform::Shared;
use super::rpc::{Handler, Middleware, Request, RpcClient, boxed_handler, boxed_middleware};
use super::sync::{locked, read, write};
use cluster_core::election::{Election, ElectionState};
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::health::HealthStatus;
use cluster_core::id::{AppName, LockName, MethodName, NodeId};
use cluster_core::member::Member;
use cluster_core::mode::{Mode, Role};
use cluster_core::wire::names::LockScope;

/// The role of this instance and the epoch it acts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleState {
    /// The role.
    pub role: Role,
    /// The leadership epoch while [`Role::Leader`].
    pub epoch: Option<Epoch>,
}

#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) on_active: Option<Hook>,
    pub(crate) on_passive: Option<Hook>,
    pub(crate) on_start: Option<Hook>,
    pub(crate) on_stop: Option<Hook>,
    pub(crate) on_leader_change: Option<HookWith<Option<NodeId>>>,
    pub(crate) on_member_join: Option<HookWith<Member>>,
    pub(crate) on_member_leave: Option<HookWith<Member>>,
    pub(crate) on_health_change: Option<HookWith<HealthStatus>>,
    pub(crate) on_migration_start: Option<HookWith<(NodeId, NodeId)>>,
    pub(crate) on_migration_complete: Option<HookWith<(NodeId, NodeId)>>,
    pub(crate) on_placement_invalid: Option<HookWith<String>>,
    pub(crate) on_own: Option<HookWith<Vec<u32>>>,
    pub(crate) on_release: Option<HookWith<Vec<u32>>>,
    pub(crate) admin: BTreeMap<String, super::admin_ext::AdminHandler>,
}

pub(crate) struct AppInner {
    pub(crate) name: AppName,
    pub(crate) mode: Mode,
    pub(crate) options: RwLock<AppOptions>,
    pub(crate) hooks: RwLock<Hooks>,
    pub(crate) handlers: RwLock<BTreeMap<MethodName, Handler>>,
    pub(crate) middleware: RwLock<Vec<Middleware>>,
    pub(crate) platform: OnceLock<Weak<Shared>>,
    pub(crate) role: watch::Sender<RoleState>,
    /// The leader of a Singleton app as last observed here (read by `App::leader_changes`).
    pub(crate) observed_leader: watch::Sender<Option<NodeId>>,
    pub(crate) election: Mutex<Option<Arc<dyn Election>>>,
    pub(crate) leadership: Mutex<Option<mpsc::UnboundedSender<LeaderCommand>>>,
    /// The bounded queue to the notification dispatcher (see [`super::notify`]).
    pub(crate) notify: Mutex<Option<mpsc::Sender<Notification>>>,
    pub(crate) notify_drops: super::bounded::Drops,
    pub(crate) health: Mutex<HealthStatus>,
    pub(crate) resources: RwLock<Vec<super::resource::Registered>>,
    pub(crate) running: std::sync::atomic::AtomicBool,
    pub(crate) instance_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    pub(crate) placement: RwLock<Option<cluster_core::wire::rules::PlacementSpec>>,
    pub(crate) ring_owned: Mutex<std::collections::BTreeSet<u32>>,
    pub(crate) extensions: RwLock<BTreeMap<std::any::TypeId, Extension>>,
}

/// A typed value attached to an app by an integration crate (see [`App::set_extension`]).
type Extension = Arc<dyn std::any::Any + Send + Sync>;

/// An app: an isolated component with its own KV, locks, events and RPC handlers.
///
/// Create it with [`App::new`], register hooks and handlers, then register it with a platform
/// ([`Platform::register`](super::Platform::register)). The handle is cheap to clone and stays
/// valid for the platform's lifetime; data accessors wait until the platform has started.
///
/// Isolation: an `App` handle reaches only its own KV bucket, its own locks, its own event
/// namespace and its own handlers. Other apps are reachable only through
/// [`Platform::api`](super::Platform::api).
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("role", &*self.inner.role.borrow())
            .finish()
    }
}

impl App {
    /// A new app. `name` must be a valid [`AppName`]; `Replicas(0)` and `Ring(0)` are rejected.
    pub fn new(name: impl AsRef<str>, mode: Mode) -> Result<Self> {
        let name = AppName::new(name.as_ref())?;
        match mode {
            Mode::Replicas { n: 0 } => {
                return Err(Error::InvalidArgument(format!(
                    "app {name}: replicas must be at least 1"
                )));
            }
            Mode::Ring { partitions: 0 } => {
                return Err(Error::InvalidArgument(format!(
                    "app {name}: ring partitions must be at least 1"
                )));
            }
            _ => {}
        }
        let (role, _) = watch::channel(RoleState {
            role: Role::Stopped,
            epoch: None,
        });
        Ok(Self {
            inner: Arc::new(AppInner {
                name,
                mode,
                options: RwLock::new(AppOptions::default()),
                hooks: RwLock::new(Hooks::default()),
                handlers: RwLock::new(BTreeMap::new()),
                middleware: RwLock::new(Vec::new()),
                platform: OnceLock::new(),
                role,
                observed_leader: watch::channel(None).0,
                election: Mutex::new(None),
                leadership: Mutex::new(None),
                notify: Mutex::new(None),
                notify_drops: super::bounded::Drops::new("notify"),
                health: Mutex::new(HealthStatus::Healthy),
                resources: RwLock::new(Vec::new()),
                running: std::sync::atomic::AtomicBool::new(false),
                instance_tasks: Mutex::new(Vec::new()),
                placement: RwLock::new(None),
                ring_owned: Mutex::new(std::collections::BTreeSet::new()),
                extensions: RwLock::new(BTreeMap::new()),
            }),
        })
    }

    /// A Singleton app (active/passive with leader election).
    pub fn singleton(name: impl AsRef<str>) -> Result<Self> {
        Self::new(name, Mode::Singleton)
    }

    /// A Spread (pool) app: active on every node.
    pub fn spread(name: impl AsRef<str>) -> Result<Self> {
        Self::new(name, Mode::Spread)
    }

    /// The app's name.
    pub fn name(&self) -> &AppName {
        &self.inner.name
    }

    /// The app's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Sets the default hook timeout.
    pub fn set_hook_timeout(&self, timeout: Duration) -> &Self {
        write(&self.inner.options).hook_timeout = timeout;
        self
    }

    /// Sets the timeout of one hook.
    pub fn set_timeout_of(&self, hook: HookKind, timeout: Duration) -> &Self {
        write(&self.inner.options)
            .hook_timeouts
            .insert(hook, timeout);
        self
    }

    pub(crate) fn timeout(&self, hook: HookKind) -> Duration {
        read(&self.inner.options).timeout(hook)
    }

    /// Called when this instance becomes leader, with the term's epoch in the context.
    /// `is_leader()` turns true only after it returned `Ok`. If it fails or times out, the node
    /// runs `on_passive` to undo partial work, resigns and waits the cooldown before
    /// campaigning again, so another node can take over.
    pub fn on_active<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_active = Some(boxed_hook(f));
        self
    }

    /// Called when this instance stops being leader (step-down, lost lease, shutdown), and to
    /// undo a failed or superseded `on_active`.
    pub fn on_passive<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_passive = Some(boxed_hook(f));
        self
    }

    /// Called when the instance starts on this node (every mode; for Singleton apps before the
    /// node campaigns). A failure aborts the platform's start.
    pub fn on_start<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_start = Some(boxed_hook(f));
        self
    }

    /// Called when the instance stops on this node (after `on_passive` for a leader).
    pub fn on_stop<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_stop = Some(boxed_hook(f));
        self
    }

    /// Called when the observed leader changes (`None`: no leader).
    pub fn on_leader_change<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, Option<NodeId>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_leader_change = Some(boxed_hook_with(f));
        self
    }

    /// Called when another node joins the platform.
    pub fn on_member_join<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, Member) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_member_join = Some(boxed_hook_with(f));
        self
    }

    /// Called when another node leaves the platform, gracefully or because its membership
    /// lease expired.
    pub fn on_member_leave<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, Member) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_member_leave = Some(boxed_hook_with(f));
        self
    }

    /// Called when this instance's health changes.
    pub fn on_health_change<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, HealthStatus) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_health_change = Some(boxed_hook_with(f));
        self
    }

    /// Adds a resource held while this instance is active (see
    /// [`ActiveResource`](super::ActiveResource)): activated in the order added, before
    /// `on_active` (Singleton) or at start (other modes), deactivated in reverse order.
    pub fn add_resource(
        &self,
        resource: Arc<dyn cluster_core::resource::ActiveResource>,
        policy: cluster_core::resource::RetryPolicy,
    ) -> &Self {
        if let Some(deadline) = self.deadline_watch() {
            resource.follow_deadline(deadline);
        }
        write(&self.inner.resources).push(super::resource::Registered { resource, policy });
        self
    }

    /// Attaches `value` to this app, one value per type, replacing (and returning) an earlier
    /// one of the same type. Integration crates use it to hang their per-app handles on the app
    /// (for example the replicated SQLite database that `cluster::sqlite` attaches, reached
    /// again with `app.db()`), without cluster-core knowing their types.
    pub fn set_extension<T: std::any::Any + Send + Sync>(&self, value: T) -> Option<Arc<T>> {
        let previous =
            write(&self.inner.extensions).insert(std::any::TypeId::of::<T>(), Arc::new(value));
        previous.and_then(|p| p.downcast::<T>().ok())
    }

    /// The value of type `T` attached with [`set_extension`](Self::set_extension), if any.
    pub fn extension<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        read(&self.inner.extensions)
            .get(&std::any::TypeId::of::<T>())
            .cloned()
            .and_then(|v| v.downcast::<T>().ok())
    }

    pub(crate) fn resources(&self) -> Vec<super::resource::Registered> {
        read(&self.inner.resources).clone()
    }

    /// Called on the current leader before a migration of the app from `from` to `to`; an error
    /// rejects the migration.
    pub fn on_migration_start<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, (NodeId, NodeId)) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_migration_start = Some(boxed_hook_with(f));
        self
    }

    /// Called on the new leader once a migration from `from` to `to` completed.
    pub fn on_migration_complete<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, (NodeId, NodeId)) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_migration_complete = Some(boxed_hook_with(f));
        self
    }

    /// Called on every node hosting the app when its placement rules cannot be satisfied, with
    /// the reason (which constraint eliminated which nodes).
    pub fn on_placement_invalid<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_placement_invalid = Some(boxed_hook_with(f));
        self
    }

    /// Ring apps: called with the partitions this node now owns (after the previous owner
    /// released them).
    pub fn on_own<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, Vec<u32>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_own = Some(boxed_hook_with(f));
        self
    }

    /// Ring apps: called with the partitions this node must give up, before any other node
    /// owns them.
    pub fn on_release<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(HookContext, Vec<u32>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        write(&self.inner.hooks).on_release = Some(boxed_hook_with(f));
        self
    }

    /// Ring apps: the partition map of the latest assignment seen by this node.
    pub fn ring(&self) -> Option<super::RingView> {
        let shared = self.shared().ok()?;
        super::placement::ring_view(&shared, self.name())
    }

    /// Ring apps: the partitions this node owns now (its `on_own` completed, `on_release` not
    /// yet called).
    pub fn owned_partitions(&self) -> Vec<u32> {
        locked(&self.inner.ring_owned).iter().copied().collect()
    }

    /// Registers the handler of `method`, replacing any previous one. Invalid method names are
    /// rejected.
    pub fn handle<F, Fut>(&self, method: impl AsRef<str>, f: F) -> Result<&Self>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
    {
        let method = MethodName::new(method.as_ref())?;
        write(&self.inner.handlers).insert(method, boxed_handler(f));
        Ok(self)
    }

    /// Adds a middleware around every handler. The first added is the outermost:
    /// `m1 → m2 → handler → m2 → m1`.
    pub fn use_middleware<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Request, super::rpc::Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, BoxError>> + Send + 'static,
    {
        write(&self.inner.middleware).push(boxed_middleware(f));
        self
    }

    /// Emits an audit record about this app from this node (`category.action` with `data`,
    /// tokens validated). Integration crates use it for their events (e.g. `wal.promoted`).
    /// `InvalidArgument` when the app is not registered with a running platform.
    pub fn audit(&self, category: &str, action: &str, data: serde_json::Value) -> Result<()> {
        let shared = self.shared()?;
        let record = cluster_core::audit::AuditRecord::new(
            category,
            action,
            Some(&self.inner.name),
            &shared.node,
            data,
        );
        record.validate()?;
        shared.audit_record(record);
        Ok(())
    }

    pub(crate) fn shared(&self) -> Result<Arc<Shared>> {
        self.inner
            .platform
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "app {} is not registered with a running platform",
                    self.inner.name
                ))
            })
    }

    /// Sets the app's placement rules, interpreted by the platform's planner (see
    /// `cluster::placement::AppPlacementExt` for the builder methods). Advertised to every node
    /// (as the rules document in the member record); when the platform is running the
    /// controller re-evaluates placement.
    pub fn set_placement(&self, spec: cluster_core::wire::rules::PlacementSpec) -> &Self {
        *write(&self.inner.placement) = Some(spec);
        if let Ok(shared) = self.shared() {
            shared.refresh_presence();
        }
        self
    }

    /// The app's placement rules, if any.
    pub fn placement(&self) -> Option<cluster_core::wire::rules::PlacementSpec> {
        read(&self.inner.placement).clone()
    }

    /// Whether this node runs an instance of the app now.
    pub fn is_running(&self) -> bool {
        self.inner.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The node this app runs on (once registered with a platform).
    pub fn node_id(&self) -> Option<NodeId> {
        self.shared().ok().map(|s| s.node.clone())
    }

    /// The current role on this node.
    pub fn role(&self) -> Role {
        self.inner.role.borrow().role
    }

    /// A watch of the role (for waiting on transitions).
    pub fn role_watch(&self) -> watch::Receiver<RoleState> {
        self.inner.role.subscribe()
    }

    /// Whether this instance is the leader: `on_active` completed for the current term and the
    /// term's local deadline has not passed.
    pub fn is_leader(&self) -> bool {
        let state = *self.inner.role.borrow();
        state.role == Role::Leader && state.epoch.is_some() && state.epoch == self.fencing_token()
    }

    /// The fencing token of the current term while this node holds the lease (also during
    /// `on_active`); `None` otherwise.
    pub fn fencing_token(&self) -> Option<Epoch> {
        locked(&self.inner.election)
            .as_ref()
            .and_then(|e| e.fencing_token())
    }

    /// Fails with `Fenced` unless `token` is the current term's fencing token on this node.
    pub fn check_epoch(&self, token: Epoch) -> Result<()> {
        match self.fencing_token() {
            Some(current) if current == token => Ok(()),
            Some(current) => Err(Error::Fenced {
                presented: token,
                current,
            }),
            None => Err(self.not_leader()),
        }
    }

    pub(crate) fn not_leader(&self) -> Error {
        let leader = self.election_state().and_then(|s| s.leader);
        Error::NotLeader {
            epoch: leader.as_ref().map(|l| l.epoch),
            leader: leader.map(|l| l.node),
        }
    }

    /// The election state on this node (Singleton apps on a running platform).
    pub fn election_state(&self) -> Option<ElectionState> {
        locked(&self.inner.election)
            .as_ref()
            .map(|e| e.status().borrow().clone())
    }

    /// This node's leadership deadline for the app, while its Singleton instance runs on a
    /// platform.
    fn deadline_watch(&self) -> Option<super::DeadlineWatch> {
        let status = locked(&self.inner.election).as_ref().map(|e| e.status())?;
        let timing = self.shared().ok()?.options.election;
        Some(
            super::DeadlineWatch::new(status, timing.lease_ttl.saturating_sub(timing.act_window()))
                .with_reporter(guard_reporter(crate::WeakApp::new(self))),
        )
    }

    /// Hands the deadline watch to every resource (see `ActiveResource::follow_deadline`);
    /// called when the instance's election starts.
    pub(crate) fn follow_deadline_all(&self) {
        let Some(deadline) = self.deadline_watch() else {
            return;
        };
        for r in read(&self.inner.resources).iter() {
            r.resource.follow_deadline(deadline.clone());
        }
    }

    /// The current leader as observed by this node.
    pub fn leader(&self) -> Option<NodeId> {
        self.election_state().and_then(|s| s.leader).map(|l| l.node)
    }

    /// Gracefully steps down: runs `on_passive`, then releases the lease so a standby takes
    /// over at once. This node waits the cooldown before campaigning again. `NotLeader` when
    /// this node is not the leader.
    pub async fn step_down(&self) -> Result<()> {
        self.leader_command(|reply| LeaderCommand::StepDown { reply })
            .await
    }

    /// Hands leadership to `to` (a standby of this app): runs `on_passive`, then lets only `to`
    /// claim the next term.
    pub async fn hand_off(&self, to: &NodeId) -> Result<()> {
        let to = to.clone();
        self.leader_command(|reply| LeaderCommand::HandOff { to, reply })
            .await
    }

    async fn leader_command(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<()>>) -> LeaderCommand,
    ) -> Result<()> {
        if !self.inner.mode.is_singleton() {
            return Err(Error::InvalidArgument(format!(
                "app {} is not a Singleton app",
                self.inner.name
            )));
        }
        let sender = locked(&self.inner.leadership).clone();
        let Some(sender) = sender else {
            return Err(self.not_leader());
        };
        let (tx, rx) = oneshot::channel();
        sender.send(make(tx)).map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Reports this instance's health; `on_health_change` fires when it changes.
    pub fn report_health(&self, status: HealthStatus) {
        let changed = {
            let mut health = locked(&self.inner.health);
            let changed = *health != status;
            *health = status.clone();
            changed
        };
        if changed {
            self.notify(Notification::Health(status));
        }
    }

    /// This instance's health as last reported.
    pub fn health(&self) -> HealthStatus {
        locked(&self.inner.health).clone()
    }

    pub(crate) fn notify(&self, n: Notification) {
        let Some(tx) = locked(&self.inner.notify).clone() else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(n)) = tx.try_send(n) {
            let shared = self.shared().ok();
            self.inner
                .notify_drops
                .dropped(shared.as_ref().map(|s| &s.stats), n.kind());
        }
    }

    /// The app's private KV store.
    pub fn kv(&self) -> AppKv {
        AppKv::new(self.clone())
    }

    /// A lock private to this app. Invalid names are rejected.
    pub fn lock(&self, name: impl AsRef<str>) -> Result<DistLock> {
        let name = LockName::new(name.as_ref())?;
        let home: std::sync::Weak<dyn crate::locks::LockHome> =
            self.inner.platform.get().cloned().unwrap_or_default();
        Ok(DistLock::new(
            home,
            LockScope::App(self.inner.name.clone()),
            name,
        ))
    }

    /// The app's event namespace.
    pub fn events(&self) -> Events {
        Events::for_app(self.clone())
    }

    /// RPC to instances of this app.
    pub fn rpc(&self) -> RpcClient {
        RpcClient::for_app(self.clone())
    }

    pub(crate) fn context(&self, epoch: Option<Epoch>) -> HookContext {
        HookContext {
            app: self.clone(),
            epoch,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    pub(crate) fn set_role(&self, role: Role, epoch: Option<Epoch>) {
        if self.inner.mode.is_singleton() {
            crate::metrics::election_role(self.inner.name.as_str(), role == Role::Leader);
        }
        self.inner.role.send_replace(RoleState { role, epoch });
    }
}

/// Audits a guard that fired as a record `{category}.guard.fired` of the app, with the epoch and
/// the string fields (nothing once the app is gone).
fn guard_reporter(app: crate::WeakApp) -> cluster_core::deadline::GuardReporter {
    std::sync::Arc::new(
        move |category: &str, epoch: Epoch, fields: &[(&str, &str)]| {
            let Some(app) = app.upgrade() else {
                return;
            };
            let mut data = serde_json::Map::new();
            data.insert("epoch".into(), epoch.0.into());
            for (k, v) in fields {
                data.insert((*k).into(), (*v).into());
            }
            if let Err(e) = app.audit(category, "guard.fired", data.into()) {
                tracing::warn!(app = %app.name(), error = %e, "auditing a fired guard failed");
            }
        },
    )
}
