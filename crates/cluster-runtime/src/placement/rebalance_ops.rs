//! Operator rebalancing through the library API: the plan the planner proposes now, and the
//! rebalance of one app executed step by step as moves (what `cluster app rebalance` does).

use std::time::Duration;

use tracing::info;

use super::ops::MoveRequest;
use crate::platform::Platform;
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;
use cluster_core::wire::placement_admin::RebalancePlan;

impl Platform {
    /// What a rebalance would do now, for `app` or for every app (nothing is changed): the
    /// planner's rebalance with hysteresis (a balanced cluster gives an empty plan).
    /// `AppNotFound` for an app no member declares; `Unsupported` without a planner.
    pub async fn rebalance_plan(&self, app: Option<&str>) -> Result<RebalancePlan> {
        self.rebalance_plan_with(app, None).await
    }

    /// [`Platform::rebalance_plan`] with another start threshold than the planner's.
    pub(crate) async fn rebalance_plan_with(
        &self,
        app: Option<&str>,
        threshold: Option<f64>,
    ) -> Result<RebalancePlan> {
        let Some(planner) = self.shared().planner.clone() else {
            return Err(Error::Unsupported(format!(
                "rebalance: node {} runs without the placement controller",
                self.node_id()
            )));
        };
        let app = app.map(AppName::new).transpose()?;
        let started = self.shared().started().await?;
        let gathered = super::gather_plan_request(self.shared(), &*started.placement).await?;
        if let Some(app) = &app
            && !gathered.request.apps.iter().any(|a| &a.name == app)
        {
            return Err(Error::AppNotFound(app.to_string()));
        }
        planner.rebalance(&gathered.request, app.as_ref(), threshold)
    }

    /// Rebalances `app` now: computes [`Platform::rebalance_plan`] for it and executes each
    /// step as a move ([`Platform::move_app`], each bounded by `step_timeout`), in order.
    /// Returns the plan that ran (empty when the app is balanced). Stops at the first step that
    /// fails, with its error; the steps before it stay done.
    pub async fn rebalance_app(&self, app: &str, step_timeout: Duration) -> Result<RebalancePlan> {
        let plan = self.rebalance_plan(Some(app)).await?;
        for step in &plan.migrations {
            let (Some(from), "move" | "leader") = (&step.from, step.kind.as_str()) else {
                continue;
            };
            let to = self
                .move_app(MoveRequest {
                    app: step.app.to_string(),
                    from: from.to_string(),
                    to: step.to.as_ref().map(ToString::to_string),
                    timeout: step_timeout,
                })
                .await?;
            info!(app = %step.app, %from, %to, "rebalance step done");
        }
        Ok(plan)
    }
}
