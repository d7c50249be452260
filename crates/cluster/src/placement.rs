//! Enforced placement: typed placement rules for apps, and the planner that turns them into an
//! assignment (`cluster-placement`'s [`PlacementPlanner`], which holds all placement policy),
//! wired into the core controller.
//!
//! ```
//! use cluster::App;
//! use cluster::placement::AppPlacementExt;
//!
//! let app = App::new("worker", cluster::Mode::Replicas { n: 3 }).unwrap();
//! app.on_label("tier", "compute").unwrap();
//! app.away_from_app("convex").unwrap();
//! ```

use std::collections::BTreeMap;

use cluster_core::{AppName, Error, Labels, NodeId, Result};
use cluster_runtime::App;

pub use cluster_placement::{
    AppPlacement, AppSpec, Assignment, Constraint, NamedStrategy, NodeInfo, PlacementPlanner,
    PlacementSpec, Preference, Resources, Strategy, StrategyKind, planner,
};

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
        let mut spec = self.placement().unwrap_or_else(PlacementSpec::current);
        spec.v = cluster_placement::planner::SPEC_VERSION;
        edit(&mut spec);
        self.set_placement(spec);
        Ok(self)
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
pub fn placements(assignment: &Assignment) -> BTreeMap<AppName, AppPlacement> {
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
