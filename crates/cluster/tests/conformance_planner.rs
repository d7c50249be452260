//! The planner conformance suite against the platform's planner (`cluster-placement`'s
//! `PlacementPlanner`, as the facade wires it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cluster::core::Planner;
use cluster_testkit::conformance::planner::{self, PlannerFactory};

struct Facade;

impl PlannerFactory for Facade {
    fn planner(&self) -> Arc<dyn Planner> {
        cluster::placement::planner()
    }
}

#[test]
fn planner_suite_placement_planner() {
    planner::run_all(&Facade);
}
