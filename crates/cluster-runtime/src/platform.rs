//! The platform: one node's runtime hosting registered apps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::app::App;
use super::events::Events;
use super::lease_view::trusted_leader;
use super::locks::{DistLock, LockHome};
use super::membership::{MemberMap, Presence, start_view};
use super::notify::{Notification, spawn_dispatcher};
use super::options::PlatformOptions;
use super::rpc::RpcClient;
use crate::node::NodeContext;
use crate::stats::Stats;
use crate::sync::{locked, read};
use cluster_core::clock::{Clock, TokioClock};
use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, LockName, NodeId, PlatformName};
use cluster_core::kv::{BucketConfig, KvBucket, KvStore};
use cluster_core::labels::Labels;
use cluster_core::member::{Member, MemberApp};
use cluster_core::mode::{Mode, Role};
use cluster_core::transport::Transport;
use cluster_core::wire::names::{LockScope, Names};

/// What exists once the platform has started.
pub(crate) struct Started {
    pub(crate) election: Arc<dyn KvBucket>,
    pub(crate) placement: Arc<dyn KvBucket>,
    pub(crate) locks: Arc<dyn KvBucket>,
    pub(crate) app_buckets: BTreeMap<AppName, Arc<dyn KvBucket>>,
    pub(crate) membership: watch::Receiver<MemberMap>,
    /// When each member record was last seen changing (for `node remove`).
    pub(crate) liveness: Arc<super::membership::Liveness>,
}

/// State shared by the platform's tasks and handles.
pub(crate) struct Shared {
    /// The node's services every component shares (see [`NodeContext`]).
    pub(crate) ctx: Arc<NodeContext>,
    pub(crate) labels: RwLock<Labels>,
    pub(crate) apps: RwLock<BTreeMap<AppName, App>>,
    pub(crate) started: watch::Sender<Option<Arc<Started>>>,
    pub(crate) draining: AtomicBool,
    pub(crate) running: AtomicBool,
    pub(crate) tasks: Mutex<Vec<AbortHandle>>,
    pub(crate) joined_at: std::time::SystemTime,
    pub(crate) presence_changed: Notify,
    pub(crate) ready: watch::Sender<bool>,
    pub(crate) planner: Option<Arc<dyn super::Planner>>,
    pub(crate) assignment: watch::Sender<Option<Arc<super::AssignmentRecord>>>,
    pub(crate) label_overrides: RwLock<Option<cluster_core::wire::placement::LabelsRecord>>,
    /// Serialises Ring ownership changes (the agent's handshake and the release at shutdown).
    pub(crate) ring_lock: tokio::sync::Mutex<()>,
    /// Software version advertised in the member record.
    pub(crate) version: String,
    /// Auto-rebalance settings used while the placement bucket holds none.
    pub(crate) rebalance_defaults: super::placement::RebalanceDefaults,
    /// Measures this node's load for its member record.
    pub(crate) load_probe: Option<Arc<dyn super::LoadProbe>>,
    /// Proof that no other process of this node runs on this host (opt-in).
    pub(crate) host_lock: Option<cluster_core::host::HostLock>,
    /// Handler subscriptions of this node's events, for `Events::unsubscribe`.
    pub(crate) event_subs: super::event_registry::EventRegistry,
}

impl std::ops::Deref for Shared {
    type Target = NodeContext;

    fn deref(&self) -> &NodeContext {
        &self.ctx
    }
}

#[async_trait::async_trait]
impl LockHome for Shared {
    fn node(&self) -> &NodeContext {
        &self.ctx
    }

    async fn locks_bucket(&self) -> Result<Arc<dyn KvBucket>> {
        Ok(self.started().await?.locks.clone())
    }
}

impl Shared {
    /// A platform-wide lock.
    pub(crate) fn platform_lock(self: &Arc<Self>, name: LockName) -> DistLock {
        let home: Weak<dyn LockHome> = Arc::downgrade(self) as Weak<Shared>;
        DistLock::new(home, LockScope::Platform, name)
    }

    pub(crate) async fn started(&self) -> Result<Arc<Started>> {
        let mut rx = self.started.subscribe();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return Ok(s);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Err(Error::ShuttingDown) },
                _ = self.shutdown.cancelled() => return Err(Error::ShuttingDown),
            }
        }
    }

    /// Asks the heartbeat to publish this node's member record now (apps started or stopped,
    /// labels or placement rules changed).
    pub(crate) fn refresh_presence(&self) {
        self.presence_changed.notify_one();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn track(&self, handle: AbortHandle) {
        locked(&self.tasks).push(handle);
    }

    pub(crate) fn local_member(&self) -> Member {
        let apps = read(&self.apps)
            .values()
            .map(|a| MemberApp {
                name: a.name().clone(),
                mode: a.mode(),
                running: a.is_running(),
                role: a.role(),
                placement: a.placement().and_then(|rules| {
                    rules
                        .to_json()
                        .inspect_err(|e| warn!(app = %a.name(), error = %e, "rules not advertised"))
                        .ok()
                }),
                ready: a.resources().iter().all(|r| r.resource.standby_ready()),
            })
            .collect();
        let healthy = read(&self.apps)
            .values()
            .all(|a| a.health() == cluster_core::health::HealthStatus::Healthy);
        Member {
            node_id: self.node.clone(),
            platform: self.names.platform().clone(),
            instance: self.instance.clone(),
            address: self.options.address.clone(),
            labels: self.effective_labels(),
            apps,
            healthy,
            joined_at: self.joined_at,
            last_seen: self.clock.wall(),
            version: self.version.clone(),
            shutting_down: self.is_draining(),
            load: self.load_probe.as_ref().and_then(|p| p.sample()),
            host: self.host_lock.as_ref().map(|l| l.info().clone()),
        }
    }

    /// The owner of `key`'s partition of Ring app `app`, from the latest assignment.
    pub(crate) fn ring_owner(&self, app: &AppName, key: &str) -> Result<NodeId> {
        super::placement::ring_view(self, app)
            .ok_or_else(|| {
                Error::AppNotFound(format!("{app} (no ring assignment known on this node)"))
            })?
            .node_for(key)
    }

    /// Configured labels with the overrides of the placement bucket applied.
    pub(crate) fn effective_labels(&self) -> Labels {
        let mut labels = read(&self.labels).clone();
        if let Some(o) = read(&self.label_overrides).as_ref() {
            for key in &o.removed {
                labels.remove(key);
            }
            for (k, v) in o.set.iter() {
                // Keys and values were validated when the record was written.
                let _ = labels.insert(k, v);
            }
        }
        labels
    }

    pub(crate) fn notify_apps(&self, about: &NodeId, n: Notification) {
        if *about == self.node {
            return;
        }
        for app in read(&self.apps).values() {
            app.notify(n.clone());
        }
    }

    fn members(&self) -> MemberMap {
        self.started
            .borrow()
            .as_ref()
            .map(|s| s.membership.borrow().clone())
            .unwrap_or_default()
    }

    /// Number of live members running `app`.
    pub(crate) fn members_running(&self, app: &AppName) -> usize {
        self.members().values().filter(|m| m.runs(app)).count()
    }

    /// The mode of `app` as registered here or advertised by any member.
    pub(crate) fn app_mode(&self, app: &AppName) -> Option<Mode> {
        if let Some(a) = read(&self.apps).get(app) {
            return Some(a.mode());
        }
        self.members()
            .values()
            .flat_map(|m| m.apps.iter())
            .find(|a| &a.name == app)
            .map(|a| a.mode)
    }

    /// The current leader of `app`: from the local election if the app runs here, else from
    /// its lease record.
    /// The current leader of `app`: from the local election if the app runs here, else from
    /// its lease record. During a hand-over (no leader yet) it waits for one until `deadline`,
    /// so leader-routed calls ride through graceful step-downs and failovers.
    pub(crate) async fn resolve_leader(
        &self,
        app: &AppName,
        deadline: tokio::time::Instant,
    ) -> Result<NodeId> {
        let local = read(&self.apps).get(app).cloned();
        let election = local
            .as_ref()
            .and_then(|a| locked(&a.inner.election).as_ref().map(|e| e.status()));
        if let Some(mut status) = election {
            let found = tokio::time::timeout_at(deadline, async {
                loop {
                    if let Some(l) = status.borrow_and_update().leader.as_ref() {
                        return Some(l.node.clone());
                    }
                    if status.changed().await.is_err() {
                        return None;
                    }
                }
            })
            .await;
            return match found {
                Ok(Some(node)) => Ok(node),
                _ => Err(Error::NoLeader(format!("app {app}"))),
            };
        }
        let started = self.started().await?;
        loop {
            let key = self.names.lease_key(app);
            if let Some((node, _)) = trusted_leader(started.election.as_ref(), &key).await? {
                return Ok(node);
            }
            if tokio::time::Instant::now() + LEADER_POLL >= deadline {
                return Err(Error::NoLeader(format!("app {app}")));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }
}

/// How often a caller re-reads a remote app's lease while no leader is known.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Builds a [`Platform`].
pub struct PlatformBuilder {
    name: Result<PlatformName>,
    node: Result<NodeId>,
    labels: Labels,
    options: PlatformOptions,
    transport: Option<Arc<dyn Transport>>,
    kv: Option<Arc<dyn KvStore>>,
    clock: Arc<dyn Clock>,
    planner: Option<Arc<dyn super::Planner>>,
    audit: Option<Arc<dyn cluster_core::audit::AuditSink>>,
    version: String,
    rebalance_defaults: super::placement::RebalanceDefaults,
    load_probe: Option<Arc<dyn super::LoadProbe>>,
    host_lock: Option<cluster_core::host::HostLock>,
}

impl std::fmt::Debug for PlatformBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformBuilder").finish_non_exhaustive()
    }
}

impl PlatformBuilder {
    /// Sets the node's labels.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Sets the options.
    pub fn options(mut self, options: PlatformOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the transport implementation.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Sets the KV store implementation.
    pub fn kv_store(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Enables enforced placement with `planner` (see `cluster::placement`): a controller decides
    /// where each app runs and `Replicas`/`Ring` modes become available.
    pub fn planner(mut self, planner: Arc<dyn super::Planner>) -> Self {
        self.planner = Some(planner);
        self
    }

    /// Sets where audit records go (without one, records are only logged and
    /// [`Platform::audit`] queries fail with `Unsupported`).
    pub fn audit(mut self, sink: Arc<dyn cluster_core::audit::AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Sets the software version advertised in the member record (default: this crate's
    /// version). Members reporting different versions pause auto-rebalance (rolling upgrade).
    pub fn software_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The spec's `WithAutoRebalance`: the auto-rebalance configuration used while the
    /// placement bucket holds none (`cluster config set auto-rebalance.*` overrides it
    /// cluster-wide).
    pub fn auto_rebalance(
        mut self,
        config: cluster_core::wire::rebalance::AutoRebalanceConfig,
    ) -> Self {
        self.rebalance_defaults.auto = config;
        self
    }

    /// Measures this node's load (CPU, memory, disk) for its member record, sampled at every
    /// heartbeat. Resource-aware rebalancing and the migration policy's `load_threshold` act
    /// on it; without a probe the node reports no load and load limits never block it.
    pub fn load_probe(mut self, probe: Arc<dyn super::LoadProbe>) -> Self {
        self.load_probe = Some(probe);
        self
    }

    /// The spec's `WithMigrationPolicy`: the migration policy used while the placement bucket
    /// holds none.
    pub fn migration_policy(
        mut self,
        policy: cluster_core::wire::rebalance::MigrationPolicy,
    ) -> Self {
        self.rebalance_defaults.policy = policy;
        self
    }

    /// Opts in to the fast restart on the same host: `lock` (held for the platform's
    /// lifetime) proves that no other process of this node runs here, so a member record left
    /// by a crashed predecessor on this host (same machine-id, and an earlier boot or the same
    /// lock file) is taken over at once instead of after `member_ttl`. Without it (the
    /// default) a record of another process is taken over only once it was not renewed for
    /// `member_ttl`. See ARCHITECTURE.md, "Membership".
    pub fn host_lock(mut self, lock: cluster_core::host::HostLock) -> Self {
        self.host_lock = Some(lock);
        self
    }

    /// Sets the clock (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates everything and builds the platform (nothing is connected or started yet).
    pub fn build(self) -> Result<Platform> {
        let mut problems = Vec::new();
        if let Err(e) = &self.name {
            problems.push(e.to_string());
        }
        if let Err(e) = &self.node {
            problems.push(e.to_string());
        }
        if let Err(e) = self.options.validate() {
            problems.push(e.to_string());
        }
        if self.transport.is_none() {
            problems.push("no transport configured".to_owned());
        }
        if self.kv.is_none() {
            problems.push("no KV store configured".to_owned());
        }
        let (Ok(name), Ok(node), Some(transport), Some(kv), true) = (
            self.name,
            self.node,
            self.transport,
            self.kv,
            problems.is_empty(),
        ) else {
            return Err(Error::InvalidArgument(problems.join("; ")));
        };
        let (started, _) = watch::channel(None);
        crate::metrics::describe();
        Ok(Platform {
            shared: Arc::new(Shared {
                joined_at: self.clock.wall(),
                ctx: Arc::new(NodeContext {
                    names: Names::new(name),
                    node,
                    instance: uuid::Uuid::new_v4().simple().to_string(),
                    options: self.options,
                    transport,
                    kv,
                    clock: self.clock,
                    shutdown: CancellationToken::new(),
                    stats: Stats::default(),
                    audit: super::audit::AuditHub::new(self.audit),
                }),
                labels: RwLock::new(self.labels),
                apps: RwLock::new(BTreeMap::new()),
                started,
                draining: AtomicBool::new(false),
                running: AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
                presence_changed: Notify::new(),
                ready: watch::channel(false).0,
                planner: self.planner,
                version: self.version,
                rebalance_defaults: self.rebalance_defaults,
                load_probe: self.load_probe,
                host_lock: self.host_lock,
                assignment: watch::channel(None).0,
                label_overrides: RwLock::new(None),
                ring_lock: tokio::sync::Mutex::new(()),
                event_subs: Default::default(),
            }),
        })
    }
}

/// One node of a platform: hosts registered apps until shut down.
///
/// ```text
/// run():      buckets → join membership → membership view → RPC subscriptions
///             → on_start of every app → campaign (Singleton apps) → … until shutdown()
/// shutdown:   refuse new RPCs → leaders run on_passive and release their lease
///             → on_stop of every app → unsubscribe → leave membership
/// ```
#[derive(Clone)]
pub struct Platform {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("platform", self.shared.names.platform())
            .field("node", &self.shared.node)
            .finish()
    }
}

impl Platform {
    /// Starts building a node `node` of platform `name`. Invalid names are reported by
    /// [`PlatformBuilder::build`].
    pub fn builder(name: impl AsRef<str>, node: impl AsRef<str>) -> PlatformBuilder {
        PlatformBuilder {
            name: PlatformName::new(name.as_ref()).map_err(Error::from),
            node: NodeId::new(node.as_ref()).map_err(Error::from),
            labels: Labels::new(),
            options: PlatformOptions::default(),
            transport: None,
            kv: None,
            clock: Arc::new(TokioClock),
            planner: None,
            audit: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            rebalance_defaults: Default::default(),
            load_probe: None,
            host_lock: None,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle on the platform `shared` belongs to (for services running inside it).
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The platform's name.
    pub fn name(&self) -> &PlatformName {
        self.shared.names.platform()
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.shared.node
    }

    /// This process incarnation's id.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The options.
    pub fn options(&self) -> &PlatformOptions {
        &self.shared.options
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The platform's audit records (query, application events).
    pub fn audit(&self) -> super::audit_query::Audit {
        super::audit_query::Audit::new(&self.shared.ctx)
    }

    /// Registers an app (before [`Platform::run`]). Fails on a duplicate name or an app
    /// already registered elsewhere; `Replicas` and `Ring` modes need the placement controller
    /// and are refused until it lands.
    pub fn register(&self, app: &App) -> Result<()> {
        if self.shared.running.load(Ordering::SeqCst) {
            return Err(Error::InvalidArgument(format!(
                "app {}: register apps before the platform runs",
                app.name()
            )));
        }
        if matches!(app.mode(), Mode::Replicas { .. } | Mode::Ring { .. })
            && self.shared.planner.is_none()
        {
            return Err(Error::Unsupported(format!(
                "app {}: mode {} needs a platform built with a planner (placement controller)",
                app.name(),
                app.mode()
            )));
        }
        let mut apps = self.shared.apps.write().unwrap_or_else(|p| p.into_inner());
        if apps.contains_key(app.name()) {
            return Err(Error::InvalidArgument(format!(
                "an app named {} is already registered",
                app.name()
            )));
        }
        app.inner
            .platform
            .set(Arc::downgrade(&self.shared))
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "app {} is already registered with a platform",
                    app.name()
                ))
            })?;
        apps.insert(app.name().clone(), app.clone());
        Ok(())
    }

    /// A registered app.
    pub fn app(&self, name: &str) -> Option<App> {
        let name = AppName::new(name).ok()?;
        read(&self.shared.apps).get(&name).cloned()
    }

    /// Calls another app's handlers (`Platform.API("x").Call(...)` of the spec).
    pub fn api(&self, app: impl AsRef<str>) -> Result<RpcClient> {
        let app = AppName::new(app.as_ref())?;
        Ok(RpcClient::cross_app(&self.shared, app))
    }

    /// A platform-wide lock.
    pub fn lock(&self, name: impl AsRef<str>) -> Result<DistLock> {
        Ok(self.shared.platform_lock(LockName::new(name.as_ref())?))
    }

    /// Platform-wide events.
    pub fn events(&self) -> Events {
        Events::for_platform(&self.shared)
    }

    /// The live members (empty before the platform started).
    pub fn members(&self) -> Vec<Member> {
        self.shared.members().into_values().collect()
    }

    /// A watch of the live members (after start).
    pub async fn members_watch(&self) -> Result<watch::Receiver<BTreeMap<NodeId, Member>>> {
        Ok(self.shared.started().await?.membership.clone())
    }

    /// Waits until the platform has completed its start sequence (or fails with
    /// `ShuttingDown` when the start failed or the platform stopped).
    pub async fn wait_started(&self) -> Result<()> {
        let mut ready = self.shared.ready.subscribe();
        tokio::select! {
            r = ready.wait_for(|r| *r) => r.map(|_| ()).map_err(|_| Error::ShuttingDown),
            _ = self.shared.shutdown.cancelled() => Err(Error::ShuttingDown),
        }
    }

    /// Whether `app` should run on this node: with a planner, whether the latest assignment
    /// seen here places it here (`None` before any assignment arrived); without one, always.
    pub fn placed_here(&self, app: &AppName) -> Option<bool> {
        if self.shared.planner.is_none() {
            return Some(true);
        }
        self.shared
            .assignment
            .borrow()
            .as_ref()
            .map(|r| r.assignment.places(app, &self.shared.node))
    }

    /// Whether the platform completed its start and is not shutting down.
    pub fn is_started(&self) -> bool {
        *self.shared.ready.borrow() && !self.shared.is_draining()
    }

    /// Requests a graceful shutdown; [`Platform::run`] returns when it is done.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Stops every task of this node at once without releasing anything (no on_passive, no
    /// lease release, no leave): what a crash looks like to the other nodes. For tests.
    pub fn abort(&self) {
        for handle in locked(&self.shared.tasks).drain(..) {
            handle.abort();
        }
        for app in read(&self.shared.apps).values() {
            // The app's own tasks (RPC servers, leader observer, leadership machine, candidacy)
            // hold the election: left running, a "crashed" node would keep campaigning and
            // renewing its lease once it is reachable again.
            for handle in locked(&app.inner.instance_tasks).drain(..) {
                handle.abort();
            }
            locked(&app.inner.election).take();
            locked(&app.inner.leadership).take();
            locked(&app.inner.notify).take();
            app.set_role(Role::Stopped, None);
        }
        self.shared.started.send_replace(None);
        self.shared.ready.send_replace(false);
        self.shared.shutdown.cancel();
    }

    /// Runs the node until [`Platform::shutdown`] (or a fatal error), then shuts down
    /// gracefully. Start is all-or-nothing: on a failure everything started is torn down and
    /// the error returned.
    pub async fn run(&self) -> Result<()> {
        if self.shared.running.swap(true, Ordering::SeqCst) {
            return Err(Error::InvalidArgument(
                "the platform is already running".into(),
            ));
        }
        let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
        let presence = match self.start(fatal_tx).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "start failed; tearing down");
                self.teardown(None).await;
                return Err(e);
            }
        };
        self.shared.ready.send_replace(true);
        info!(platform = %self.name(), node = %self.node_id(), "platform running");
        let fatal = tokio::select! {
            _ = self.shared.shutdown.cancelled() => None,
            e = fatal_rx.recv() => e,
        };
        let timeout = self.shared.options.shutdown_timeout;
        if tokio::time::timeout(timeout, self.teardown(Some(&presence)))
            .await
            .is_err()
        {
            warn!(
                ?timeout,
                "graceful shutdown did not finish in time; abandoning"
            );
            self.abort();
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn start(&self, fatal: mpsc::UnboundedSender<Error>) -> Result<Presence> {
        let shared = &self.shared;
        let names = &shared.names;
        let replicas = shared.options.replicas;
        let bucket = |name: String, ttl: bool, what: &str| {
            let mut c = BucketConfig::new(name).described(what);
            c.replicas = replicas;
            if ttl {
                c = c.with_per_key_ttl();
            }
            c
        };
        let members = shared
            .kv
            .bucket(bucket(names.members_bucket(), true, "cluster membership"))
            .await?;
        let election = shared
            .kv
            .bucket(bucket(
                names.election_bucket(),
                true,
                "cluster election leases",
            ))
            .await?;
        let locks = shared
            .kv
            .bucket(bucket(names.locks_bucket(), true, "cluster locks"))
            .await?;
        let placement = shared
            .kv
            .bucket(bucket(names.placement_bucket(), false, "cluster placement"))
            .await?;
        // Placement loops read a watch-fed copy instead of asking the store every round.
        let (placement, mirror) = super::placement::MirroredBucket::start(placement);
        shared.track(mirror);
        let apps: Vec<App> = read(&shared.apps).values().cloned().collect();
        let mut app_buckets = BTreeMap::new();
        for app in &apps {
            let b = shared
                .kv
                .bucket(bucket(names.app_bucket(app.name()), false, "app data"))
                .await?;
            app_buckets.insert(app.name().clone(), b);
        }

        if let Some(writer) = shared.audit.spawn_writer() {
            shared.track(writer);
        }
        let presence = Presence::join(shared, members.clone()).await?;
        shared.track(presence.spawn_heartbeat(shared, fatal).abort_handle());
        let (membership, liveness, view_task) = start_view(shared, members).await?;
        shared.track(view_task.abort_handle());
        let started = Arc::new(Started {
            election: election.clone(),
            placement: placement.clone(),
            locks,
            app_buckets,
            membership,
            liveness,
        });
        shared.started.send_replace(Some(started.clone()));

        for app in &apps {
            shared.track(spawn_dispatcher(app).abort_handle());
        }
        match shared.planner.clone() {
            Some(planner) => {
                // Instances start where the controller places them.
                for handle in super::placement::spawn_controller(
                    shared,
                    &started,
                    placement.clone(),
                    planner,
                )? {
                    shared.track(handle);
                }
                shared.track(super::placement::spawn_agent(shared, placement));
            }
            None => {
                for app in &apps {
                    super::instance::start(app, shared).await?;
                }
            }
        }
        for handle in super::admin::serve(shared).await? {
            shared.track(handle);
        }
        Ok(presence)
    }

    /// Graceful stop of whatever has started.
    async fn teardown(&self, presence: Option<&Presence>) {
        let shared = &self.shared;
        shared.draining.store(true, Ordering::SeqCst);
        if let Some(presence) = presence {
            // Tell the others we are leaving (auto-rebalance pauses meanwhile).
            presence.publish(shared).await;
        }
        shared.shutdown.cancel();
        let apps: Vec<App> = read(&shared.apps).values().cloned().collect();
        // Ring partitions are released (on_release, record emptied) while this node is still a
        // member, so no other node owns them before on_release completed here.
        for app in &apps {
            super::placement::ring_release_all(shared, app).await;
        }
        // Leaders first: run on_passive and release the lease so standbys take over at once.
        let stops = apps.iter().map(|app| super::instance::stop(app, shared));
        futures::future::join_all(stops).await;
        if let Some(presence) = presence {
            match presence.leave(&shared.instance).await {
                Ok(()) => shared.audit(
                    cluster_core::audit::category::MEMBER,
                    "leave",
                    None,
                    serde_json::json!({"node": shared.node, "reason": "graceful"}),
                ),
                Err(e) => warn!(error = %e, "could not delete member record; it will expire"),
            }
        }
        shared.audit.flush().await;
        for handle in locked(&shared.tasks).drain(..) {
            handle.abort();
        }
        for app in &apps {
            locked(&app.inner.notify).take();
        }
        shared.started.send_replace(None);
        shared.ready.send_replace(false);
        let _ = shared.transport.flush().await;
        info!(node = %shared.node, "platform stopped");
    }
}
