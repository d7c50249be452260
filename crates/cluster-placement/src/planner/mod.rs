//! The platform's planner: the scheduler behind the core [`Planner`] trait, with the
//! controller's policy around it — registration constraints, actual leaders, operators'
//! moves, drains (gentle, forced, throttled), make-before-break and rebalance plans.
//!
//! Every function here is pure: a [`PlanRequest`] in, a decision out.

mod drains;
mod handover;
mod load;
mod rebalance;
mod rules;
mod steer;

use std::collections::BTreeMap;
use std::sync::Arc;

use cluster_core::planner::{PlanOutcome, PlanRequest, Planner, RebalanceOptions};
use cluster_core::wire::placement_admin::RebalancePlan;
use cluster_core::{AppName, Mode, Result};

use crate::model::AppSpec;
use crate::strategy::Strategy;

pub use drains::{schedule_with_drains, throttle_drains};
pub use handover::make_before_break;
pub use load::{over_limit, resource_step};
pub use rebalance::{planned, policy, rebalance};
pub use rules::{NamedStrategy, PlacementSpec, SPEC_VERSION, app_spec};
pub use steer::{apply_moves, follow_leaders, node_infos, only_where_registered};

/// The planner of the platform: [`schedule`](crate::schedule()) behind the core [`Planner`]
/// trait, with moves, drains and make-before-break.
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

    /// The scheduler's spec of an app from its advertised rules (none: no rules).
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
        Ok(app_spec(
            rules,
            name.clone(),
            mode,
            self.custom.get(name).cloned(),
        ))
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
        let nodes = node_infos(request);
        let mut specs: Vec<AppSpec> = request
            .apps
            .iter()
            .filter_map(|a| self.app_spec(&a.name, a.mode, a.placement.as_ref()).ok())
            .collect();
        only_where_registered(&mut specs, request);
        rebalance(request, &nodes, &specs, &request.current, options)
    }

    fn plan(&self, request: &PlanRequest) -> Result<PlanOutcome> {
        let nodes = node_infos(request);
        let original = &request.current;
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
        follow_leaders(&mut current, request);
        apply_moves(&mut specs, &mut current, request);
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
        make_before_break(&mut assignment, original, request);
        // The version counts changes against the published assignment (the steering edits of
        // `current` above are not published).
        assignment.version = if assignment.same_placement(original) {
            original.version
        } else {
            original.version + 1
        };
        Ok(PlanOutcome {
            assignment,
            pending,
            blocked,
        })
    }
}
