//! Enforced placement: typed placement rules for apps and the planner that turns them into an
//! assignment (`cluster-placement`), wired into the core controller.
//!
//! ```
//! use cluster::App;
//! use cluster::placement::AppPlacementExt;
//!
//! let app = App::new("worker", cluster::Mode::Replicas { n: 3 }).unwrap();
//! app.on_label("tier", "compute").unwrap();
//! app.away_from_app("convex").unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cluster_core::Planner;
use cluster_core::planner::{PlanOutcome, PlanRequest, RebalanceOptions};
use cluster_core::wire::placement_admin::{PlannedMigration, RebalancePlan};
use cluster_core::wire::rebalance::{StrategyName, parse_strategy};
use cluster_core::{AppName, Error, Labels, Mode, NodeId, Result};
use cluster_placement::MigrationKind;
use cluster_runtime::App;
use cluster_runtime::{AssignmentView, PlacementView};
use serde::{Deserialize, Serialize};

pub use cluster_placement::{
    AppSpec, Assignment, Constraint, NodeInfo, Preference, Resources, Strategy, StrategyKind,
};

/// Version of the placement rules document.
const SPEC_VERSION: u32 = 1;

/// A named scheduling strategy (custom strategies are registered on the planner).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NamedStrategy {
    /// Fewest instances first (default).
    #[default]
    SpreadEvenly,
    /// Fill nodes up.
    BinPack,
    /// Spread across zones first (label `key`).
    ZoneAware {
        /// The zone label.
        key: String,
    },
}

/// An app's placement rules, as advertised in its member record (JSON, `v` = 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// Document version.
    #[serde(default)]
    pub v: u32,
    /// Hard constraints.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Soft preferences.
    #[serde(default)]
    pub preferences: Vec<Preference>,
    /// Resources one instance needs.
    #[serde(default)]
    pub resources: Resources,
    /// Ranking strategy.
    #[serde(default)]
    pub strategy: NamedStrategy,
    /// Singleton apps: standby candidates besides the leader (`None` = every eligible node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standbys: Option<u32>,
    /// App labels, matched by an auto-rebalance `include_labels` filter.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl PlacementSpec {
    /// The rules currently set on `app`.
    pub fn of(app: &App) -> Result<Self> {
        match app.placement() {
            Some(v) => Self::from_json(&v),
            None => Ok(Self {
                v: SPEC_VERSION,
                ..Self::default()
            }),
        }
    }

    /// Decodes and checks a rules document.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let spec: PlacementSpec = serde_json::from_value(value.clone())
            .map_err(|e| Error::Malformed(format!("placement rules: {e}")))?;
        if spec.v != SPEC_VERSION {
            return Err(Error::Malformed(format!(
                "placement rules version {} (this node understands {SPEC_VERSION})",
                spec.v
            )));
        }
        Ok(spec)
    }

    fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::Internal(format!("placement rules: {e}")))
    }
}

/// Typed placement rules on an [`App`] (the spec's `OnNodes`, `OnLabel`, ...). Rules added while
/// the platform runs are re-evaluated by the controller at once.
pub trait AppPlacementExt {
    /// Edits the app's rules.
    fn edit_placement(&self, edit: impl FnOnce(&mut PlacementSpec)) -> Result<&Self>;

    /// Only on these nodes.
    fn on_nodes<I, S>(&self, nodes: I) -> Result<&Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = nodes
            .into_iter()
            .map(|n| NodeId::new(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.edit_placement(|s| s.constraints.push(Constraint::OnNodes { nodes }))
    }

    /// Only on nodes labelled `key=value`.
    fn on_label(&self, key: &str, value: &str) -> Result<&Self> {
        let c = Constraint::OnLabel {
            key: key.into(),
            value: value.into(),
        };
        self.edit_placement(|s| s.constraints.push(c))
    }

    /// Never on nodes labelled `key=value`.
    fn avoid_label(&self, key: &str, value: &str) -> Result<&Self> {
        let c = Constraint::AvoidLabel {
            key: key.into(),
            value: value.into(),
        };
        self.edit_placement(|s| s.constraints.push(c))
    }

    /// Only on nodes running `app` (co-location).
    fn with_app(&self, app: &str) -> Result<&Self> {
        let app = AppName::new(app)?;
        self.edit_placement(|s| s.constraints.push(Constraint::WithApp { app }))
    }

    /// Never on nodes running `app` (anti-affinity).
    fn away_from_app(&self, app: &str) -> Result<&Self> {
        let app = AppName::new(app)?;
        self.edit_placement(|s| s.constraints.push(Constraint::AwayFromApp { app }))
    }

    /// Prefer nodes labelled `key=value`, by `weight`.
    fn prefer_label(&self, key: &str, value: &str, weight: u32) -> Result<&Self> {
        let p = Preference::PreferLabel {
            key: key.into(),
            value: value.into(),
            weight,
        };
        self.edit_placement(|s| s.preferences.push(p))
    }

    /// Prefer `node`, by `weight`.
    fn prefer_node(&self, node: &str, weight: u32) -> Result<&Self> {
        let node = NodeId::new(node)?;
        self.edit_placement(|s| s.preferences.push(Preference::PreferNode { node, weight }))
    }

    /// Resources one instance needs (`cpu` like `"2"`/`"500m"`, memory/disk like `"4Gi"`).
    fn resources(&self, cpu: &str, memory: &str, disk: &str) -> Result<&Self> {
        let r = Resources::parse(cpu, memory, disk)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.edit_placement(|s| s.resources = r)
    }

    /// The ranking strategy.
    fn strategy(&self, strategy: NamedStrategy) -> Result<&Self> {
        self.edit_placement(|s| s.strategy = strategy)
    }

    /// Sets an app label (matched by auto-rebalance `include_labels`).
    fn app_label(&self, key: &str, value: &str) -> Result<&Self> {
        let mut labels = Labels::new();
        labels.insert(key, value)?;
        self.edit_placement(|p| {
            for (k, v) in labels.iter() {
                let _ = p.labels.insert(k, v);
            }
        })
    }
}

impl AppPlacementExt for App {
    fn edit_placement(&self, edit: impl FnOnce(&mut PlacementSpec)) -> Result<&Self> {
        let mut spec = PlacementSpec::of(self)?;
        spec.v = SPEC_VERSION;
        edit(&mut spec);
        self.set_placement(spec.to_json()?);
        Ok(self)
    }
}

/// The planner of the platform: `cluster-placement`'s scheduler behind the core
/// [`Planner`] trait, with moves, drains and make-before-break.
#[derive(Default)]
pub struct PlacementPlanner {
    custom: BTreeMap<AppName, Arc<dyn Strategy>>,
}

impl std::fmt::Debug for PlacementPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementPlanner")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A planner with the built-in strategies.
pub fn planner() -> Arc<dyn Planner> {
    Arc::new(PlacementPlanner::default())
}

impl PlacementPlanner {
    /// Uses a custom ranking for `app` (a closure or [`Strategy`] object).
    pub fn with_strategy(mut self, app: &str, strategy: Arc<dyn Strategy>) -> Result<Self> {
        self.custom.insert(AppName::new(app)?, strategy);
        Ok(self)
    }

    fn app_spec(
        &self,
        name: &AppName,
        mode: Mode,
        rules: Option<&serde_json::Value>,
    ) -> Result<AppSpec> {
        let rules = match rules {
            Some(v) => PlacementSpec::from_json(v)?,
            None => PlacementSpec::default(),
        };
        let mut spec = AppSpec::new(name.clone(), mode).with_resources(rules.resources);
        spec.constraints = rules.constraints;
        spec.preferences = rules.preferences;
        spec.standbys = rules.standbys;
        spec.labels = rules.labels;
        spec.strategy = match (self.custom.get(name), rules.strategy) {
            (Some(custom), _) => StrategyKind::Custom(custom.clone()),
            (None, NamedStrategy::SpreadEvenly) => StrategyKind::SpreadEvenly,
            (None, NamedStrategy::BinPack) => StrategyKind::BinPack,
            (None, NamedStrategy::ZoneAware { key }) => StrategyKind::ZoneAware { key },
        };
        Ok(spec)
    }
}

fn to_assignment(view: &AssignmentView) -> Result<Assignment> {
    serde_json::to_value(view)
        .and_then(serde_json::from_value)
        .map_err(|e| Error::Internal(format!("assignment conversion: {e}")))
}

fn to_view(assignment: &Assignment) -> Result<AssignmentView> {
    serde_json::to_value(assignment)
        .and_then(serde_json::from_value)
        .map_err(|e| Error::Internal(format!("assignment conversion: {e}")))
}

impl PlacementPlanner {
    /// The nodes of `request` as the scheduler sees them.
    fn node_infos(request: &PlanRequest) -> Vec<NodeInfo> {
        request
            .nodes
            .iter()
            .map(|n| {
                let mut info = NodeInfo::new(n.id.clone(), n.labels.clone());
                // A node without (or with unparsable) capacity labels is not limited.
                if let Ok(capacity) = Resources::from_labels(&n.labels) {
                    info = info.with_capacity(capacity);
                }
                info.cordoned = n.cordoned;
                // A draining node runs nothing: everything is rescheduled elsewhere.
                info.healthy = n.healthy && !n.draining;
                info.draining = n.draining;
                info
            })
            .collect()
    }
}

impl Planner for PlacementPlanner {
    fn rebalance(
        &self,
        request: &PlanRequest,
        app: Option<&AppName>,
        threshold: Option<f64>,
    ) -> Result<RebalancePlan> {
        let options = RebalanceOptions {
            app: app.cloned(),
            threshold,
            ..RebalanceOptions::default()
        };
        self.rebalance_with(request, &options)
    }

    fn rebalance_with(
        &self,
        request: &PlanRequest,
        options: &RebalanceOptions,
    ) -> Result<RebalancePlan> {
        let nodes = Self::node_infos(request);
        let mut specs: Vec<AppSpec> = request
            .apps
            .iter()
            .filter_map(|a| self.app_spec(&a.name, a.mode, a.placement.as_ref()).ok())
            .collect();
        only_where_registered(&mut specs, request);
        let current = to_assignment(&request.current)?;
        let mut policy = cluster_placement::RebalancePolicy {
            max_concurrent: 0,
            exclude_apps: options.exclude_apps.clone(),
            include_labels: options.include_labels.clone(),
            strategy: match parse_strategy(&options.strategy)? {
                StrategyName::SpreadEvenly => cluster_placement::RebalanceStrategy::SpreadEvenly,
                StrategyName::BinPack => cluster_placement::RebalanceStrategy::BinPack,
                StrategyName::ZoneAware(key) => {
                    cluster_placement::RebalanceStrategy::ZoneAware { key }
                }
            },
            ..Default::default()
        };
        if let Some(t) = options.threshold {
            policy.threshold = t;
        }
        if let Some(app) = &options.app {
            policy
                .exclude_apps
                .extend(specs.iter().map(|s| s.name.clone()).filter(|n| n != app));
        }
        let plan = cluster_placement::plan_rebalance(&nodes, &specs, &current, &policy);
        let step = |m: &cluster_placement::Migration| PlannedMigration {
            app: m.app.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            kind: match &m.kind {
                MigrationKind::Start => "start",
                MigrationKind::Stop => "stop",
                MigrationKind::Move => "move",
                MigrationKind::Leader => "leader",
                MigrationKind::Partitions { .. } => "partitions",
            }
            .to_owned(),
        };
        let mut rejected: Vec<String> = plan
            .rejected
            .iter()
            .map(|(m, why)| format!("{m}: {why}"))
            .collect();
        let mut migrations: Vec<PlannedMigration> = Vec::new();
        for m in plan.migrations.iter().map(step) {
            match over_limit(request, m.to.as_ref(), &options.max_node_load) {
                Some(why) => rejected.push(format!(
                    "{} {}→{}: {why}",
                    m.app,
                    m.from.as_ref().map_or("-", |n| n.as_str()),
                    m.to.as_ref().map_or("-", |n| n.as_str())
                )),
                None => migrations.push(m),
            }
        }
        if options.resource_aware
            && migrations.is_empty()
            && let Some(m) = resource_step(request, &nodes, &specs, &current, &policy, options)
        {
            migrations.push(m);
        }
        Ok(RebalancePlan {
            migrations,
            imbalance_before: plan.imbalance_before,
            imbalance_after: plan.imbalance_after,
            rejected,
        })
    }

    fn plan(&self, request: &PlanRequest) -> Result<PlanOutcome> {
        let nodes = Self::node_infos(request);
        let all_nodes: Vec<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
        let original = to_assignment(&request.current)?;
        let mut current = original.clone();
        let mut pending = BTreeMap::new();
        let mut specs = Vec::new();
        for app in &request.apps {
            match self.app_spec(&app.name, app.mode, app.placement.as_ref()) {
                Ok(spec) => specs.push(spec),
                Err(e) => {
                    pending.insert(app.name.clone(), format!("invalid placement rules: {e}"));
                }
            }
        }
        only_where_registered(&mut specs, request);
        // A Singleton's preferred leader follows the actual leader while no move of it is
        // requested (so a failed or withdrawn move leaves nothing behind).
        for (app, placed) in current.apps.iter_mut() {
            if request.moves.iter().any(|m| m.app == *app) {
                continue;
            }
            let leader = request
                .nodes
                .iter()
                .find(|n| n.leading.contains(app) && placed.nodes.contains(&n.id));
            if let Some(leader) = leader
                && placed.nodes.first() != Some(&leader.id)
            {
                placed.nodes.retain(|n| *n != leader.id);
                placed.nodes.insert(0, leader.id.clone());
            }
        }
        // Moves: steer the sticky scheduler by editing the current placement.
        for mv in &request.moves {
            let Some(spec) = specs.iter_mut().find(|s| s.name == mv.app) else {
                continue;
            };
            let Some(placed) = current.apps.get_mut(&mv.app) else {
                continue;
            };
            match spec.mode {
                Mode::Singleton => {
                    if let Some(to) = &mv.to {
                        placed.nodes.retain(|n| n != to);
                        placed.nodes.insert(0, to.clone());
                    }
                }
                Mode::Replicas { .. } => {
                    placed.nodes.retain(|n| *n != mv.from);
                    if let Some(to) = &mv.to
                        && !placed.nodes.contains(to)
                    {
                        placed.nodes.push(to.clone());
                    }
                    // Keep the scheduler from placing it back on the source.
                    let others: Vec<NodeId> = all_nodes
                        .iter()
                        .filter(|n| **n != mv.from)
                        .cloned()
                        .collect();
                    spec.constraints.push(Constraint::OnNodes { nodes: others });
                }
                Mode::Spread | Mode::Ring { .. } => {}
            }
        }
        let (mut assignment, mut blocked) =
            schedule_with_drains(&nodes, &specs, &current, request, &mut pending);
        throttle_drains(
            &mut assignment,
            &current,
            request,
            &mut pending,
            &mut blocked,
        );
        // Against the published assignment: an operator's move removed its source from
        // `current`, and that source must stay placed until the target runs.
        make_before_break(&mut assignment, &original, request);
        // The version counts changes against the published assignment (the steering edits of
        // `current` above are not published).
        assignment.version = if assignment.same_placement(&original) {
            original.version
        } else {
            original.version + 1
        };
        Ok(PlanOutcome {
            assignment: to_view(&assignment)?,
            pending,
            blocked,
        })
    }
}

/// Why `node` may not receive an instance under `limits` (its measured load is above one).
fn over_limit(
    request: &PlanRequest,
    node: Option<&NodeId>,
    limits: &cluster_core::wire::rebalance::ResourceLimits,
) -> Option<String> {
    let node = node?;
    let load = request.nodes.iter().find(|n| n.id == *node)?.load?;
    limits.exceeded_by(&load).map(|(dim, v, limit)| {
        format!("target {node} is over the max node load ({dim} {v:.2} > {limit:.2})")
    })
}

/// Resource-aware rebalancing: when the measured load spreads more than the thresholds allow,
/// one step moving an instance (Replicas) or the leadership (Singleton) from the most loaded
/// node to the least loaded node that may take it (eligible, under `max_node_load`, and
/// keeping every hard constraint). `None` when balanced or nothing can move.
fn resource_step(
    request: &PlanRequest,
    nodes: &[NodeInfo],
    specs: &[AppSpec],
    current: &Assignment,
    policy: &cluster_placement::RebalancePolicy,
    options: &RebalanceOptions,
) -> Option<PlannedMigration> {
    let measured: Vec<(&NodeId, cluster_core::NodeLoad)> = request
        .nodes
        .iter()
        .filter(|n| n.healthy && !n.draining)
        .filter_map(|n| n.load.map(|l| (&n.id, l)))
        .collect();
    let loads: Vec<cluster_core::NodeLoad> = measured.iter().map(|(_, l)| *l).collect();
    let (dim, _, _) = options.resource_thresholds.exceeded(&loads)?;
    let value = |l: &cluster_core::NodeLoad| {
        l.fractions()
            .into_iter()
            .find(|(d, _)| *d == dim)
            .map_or(0.0, |(_, v)| v)
    };
    let mut by_load = measured.clone();
    by_load.sort_by(|a, b| value(&a.1).total_cmp(&value(&b.1)).then(a.0.cmp(b.0)));
    let (hot, _) = *by_load.last()?;
    let targets: Vec<&NodeId> = by_load
        .iter()
        .filter(|(n, l)| {
            *n != hot
                && options.max_node_load.exceeded_by(l).is_none()
                && request.nodes.iter().any(|p| p.id == **n && !p.cordoned)
        })
        .map(|(n, _)| *n)
        .collect();
    let baseline = cluster_placement::verify(nodes, specs, current, None).len();
    // Heaviest first: the app requesting the most of the overloaded dimension relieves the
    // hot node most (apps without requests keep their order, after those with requests).
    let request_of = |s: &&AppSpec| match dim {
        "cpu" => s.resources.cpu_millis,
        "memory" => s.resources.memory_bytes,
        "disk" => s.resources.disk_bytes,
        _ => 0,
    };
    let mut candidates: Vec<&AppSpec> = specs.iter().filter(|s| policy.may_move(s)).collect();
    candidates.sort_by_key(|s| std::cmp::Reverse(request_of(s)));
    for spec in candidates {
        let Some(placed) = current.app(&spec.name) else {
            continue;
        };
        if !placed.nodes.contains(hot) {
            continue;
        }
        for to in &targets {
            let mut next = current.clone();
            let Some(p) = next.apps.get_mut(&spec.name) else {
                continue;
            };
            let kind = match spec.mode {
                Mode::Replicas { .. } if !p.nodes.contains(to) => {
                    p.nodes.retain(|n| n != hot);
                    p.nodes.push((*to).clone());
                    "move"
                }
                Mode::Singleton if p.nodes.first() == Some(hot) && p.nodes.contains(to) => {
                    p.nodes.retain(|n| n != *to);
                    p.nodes.insert(0, (*to).clone());
                    "leader"
                }
                _ => continue,
            };
            if cluster_placement::verify(nodes, specs, &next, Some(current)).len() <= baseline {
                return Some(PlannedMigration {
                    app: spec.name.clone(),
                    from: Some(hot.clone()),
                    to: Some((*to).clone()),
                    kind: kind.to_owned(),
                });
            }
        }
    }
    None
}

/// An app runs only on nodes that registered it: a node hosting a subset of the apps gets an
/// implicit `OnNodes` constraint on the others.
fn only_where_registered(specs: &mut [AppSpec], request: &PlanRequest) {
    for spec in specs {
        let hosts: Vec<NodeId> = request
            .nodes
            .iter()
            .filter(|n| n.hosts.contains(&spec.name))
            .map(|n| n.id.clone())
            .collect();
        if hosts.len() < request.nodes.len() {
            spec.constraints.push(Constraint::OnNodes { nodes: hosts });
        }
    }
}

/// Schedules with the draining nodes excluded. A drain without force keeps an instance that
/// has no eligible node elsewhere where it runs (returned as blocked, with the reason); a
/// forced drain (like an unhealthy node) stops it, so the app becomes pending or degraded.
fn schedule_with_drains(
    nodes: &[NodeInfo],
    specs: &[AppSpec],
    current: &Assignment,
    request: &PlanRequest,
    pending: &mut BTreeMap<AppName, String>,
) -> (Assignment, BTreeMap<AppName, String>) {
    let gentle: BTreeSet<NodeId> = request
        .nodes
        .iter()
        .filter(|n| n.draining && !n.drain_force && n.healthy)
        .map(|n| n.id.clone())
        .collect();
    let mut blocked = BTreeMap::new();
    if gentle.is_empty() {
        let result = cluster_placement::schedule(nodes, specs, current);
        pending.extend(result.pending);
        return (result.assignment, blocked);
    }
    // `plan_drain_nodes` excludes the gentle nodes itself and restores what cannot move.
    let mut infos = nodes.to_vec();
    for n in infos.iter_mut().filter(|n| gentle.contains(&n.id)) {
        n.healthy = true;
    }
    let plan = cluster_placement::plan_drain_nodes(&infos, specs, current, &gentle, false);
    pending.extend(plan.pending);
    for (app, why) in plan.stuck {
        if plan.assignment.apps.contains_key(&app) {
            blocked.insert(app, why);
        }
    }
    (plan.assignment, blocked)
}

/// A drain limited to some concurrent migrations: apps not yet released keep their current
/// placement on the draining node.
fn throttle_drains(
    next: &mut Assignment,
    current: &Assignment,
    request: &PlanRequest,
    pending: &mut BTreeMap<AppName, String>,
    blocked: &mut BTreeMap<AppName, String>,
) {
    let before = next.clone();
    for node in &request.nodes {
        let (true, Some(release)) = (node.draining, &node.drain_release) else {
            continue;
        };
        for (app, placed) in &current.apps {
            if !placed.nodes.contains(&node.id)
                || release.contains(app)
                || next.app(app).is_some_and(|p| p.nodes.contains(&node.id))
            {
                continue;
            }
            next.apps.insert(app.clone(), placed.clone());
            pending.remove(app);
            blocked.remove(app);
        }
    }
    if next.same_placement(&before) {
        return;
    }
    next.version = if next.same_placement(current) {
        current.version
    } else {
        current.version + 1
    };
}

/// Keeps an instance that is being replaced on its old, still healthy node until the new node
/// reports the instance running (Replicas apps).
fn make_before_break(next: &mut Assignment, current: &Assignment, request: &PlanRequest) {
    let usable: BTreeSet<&NodeId> = request
        .nodes
        .iter()
        .filter(|n| n.healthy && !n.draining)
        .map(|n| &n.id)
        .collect();
    let running = |node: &NodeId, app: &AppName| {
        request
            .nodes
            .iter()
            .any(|n| n.id == *node && n.running.contains(app))
    };
    let modes: BTreeMap<&AppName, Mode> = request.apps.iter().map(|a| (&a.name, a.mode)).collect();
    for (app, placement) in next.apps.iter_mut() {
        if !matches!(modes.get(app), Some(Mode::Replicas { .. })) {
            continue;
        }
        let Some(before) = current.apps.get(app) else {
            continue;
        };
        let added_not_ready = placement
            .nodes
            .iter()
            .any(|n| !before.nodes.contains(n) && !running(n, app));
        if !added_not_ready {
            continue;
        }
        for old in &before.nodes {
            if !placement.nodes.contains(old) && usable.contains(old) && running(old, app) {
                placement.nodes.push(old.clone());
            }
        }
    }
}

/// Builds a platform node with enforced placement on the in-memory network (dev mode).
pub fn dev_platform(
    network: &crate::dev::Network,
    name: &str,
    node: &str,
) -> Result<cluster_runtime::PlatformBuilder> {
    Ok(crate::dev::platform(network, name, node)?.planner(planner()))
}

/// A view of `assignment` for display: app → nodes.
pub fn placements(assignment: &AssignmentView) -> BTreeMap<AppName, PlacementView> {
    assignment.apps.clone()
}

/// Labels from `key=value` pairs (CLI and config helpers).
pub fn labels_from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Labels> {
    let mut labels = Labels::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("label {pair:?} is not key=value")))?;
        labels.insert(k, v)?;
    }
    Ok(labels)
}
