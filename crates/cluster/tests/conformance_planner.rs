//! The planner conformance suite against the platform's planner (`cluster-placement`'s
//! scheduler behind the core `Planner` trait), with rules written as the facade's typed
//! placement document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cluster::core::Labels;
use cluster::core::Planner;
use cluster::placement::{Constraint, PlacementSpec, Resources, planner};
use cluster_testkit::conformance::planner::{self, PlannerFactory};

struct Facade;

fn rules(spec: PlacementSpec) -> serde_json::Value {
    serde_json::to_value(PlacementSpec { v: 1, ..spec }).unwrap()
}

impl PlannerFactory for Facade {
    fn planner(&self) -> Arc<dyn Planner> {
        planner()
    }

    fn on_label(&self, key: &str, value: &str) -> serde_json::Value {
        rules(PlacementSpec {
            constraints: vec![Constraint::OnLabel {
                key: key.into(),
                value: value.into(),
            }],
            ..PlacementSpec::default()
        })
    }

    fn needs_cpu(&self, millis: u64) -> serde_json::Value {
        rules(PlacementSpec {
            resources: Resources {
                cpu_millis: millis,
                ..Resources::ZERO
            },
            ..PlacementSpec::default()
        })
    }

    fn cpu_capacity(&self, millis: u64) -> Labels {
        Labels::from_pairs([("cpu", format!("{millis}m"))]).unwrap()
    }
}

#[test]
fn planner_suite_placement_planner() {
    planner::run_all(&Facade);
}
