//! The 5-node example at the end of spec 01-platform-api.md must yield exactly its table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_core::Mode;
use cluster_placement::model::dsl::{away_from_app, on_label};
use cluster_placement::{Assignment, schedule, verify};
use common::*;

#[test]
fn five_node_example_yields_the_spec_table() {
    let nodes = vec![
        node("node-1", &[("zone", "us-east-1a"), ("tier", "compute")]),
        node("node-2", &[("zone", "us-east-1a"), ("tier", "compute")]),
        node("node-3", &[("zone", "us-east-1b"), ("tier", "compute")]),
        node("node-4", &[("zone", "us-east-1b"), ("tier", "storage")]),
        node("node-5", &[("zone", "us-east-1c"), ("tier", "controller")]),
    ];
    let apps = vec![
        app("convex", Mode::Singleton).with(on_label("tier", "storage")),
        app("cache", Mode::Spread).with(on_label("tier", "compute")),
        app("api", Mode::Spread),
        app("worker", Mode::Replicas { n: 3 }).with(away_from_app(a("convex"))),
        app("scheduler", Mode::Singleton).with(on_label("tier", "controller")),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert!(r.pending.is_empty(), "{:?}", r.pending);
    assert!(r.degraded.is_empty(), "{:?}", r.degraded);
    let got = |name: &str| ids(&r.assignment.app(&a(name)).unwrap().nodes).join(",");
    assert_eq!(got("convex"), "node-4");
    assert_eq!(got("cache"), "node-1,node-2,node-3");
    assert_eq!(got("api"), "node-1,node-2,node-3,node-4,node-5");
    assert_eq!(got("worker"), "node-1,node-2,node-3");
    assert_eq!(got("scheduler"), "node-5");
    assert_eq!(r.assignment.version, 1);
    assert!(verify(&nodes, &apps, &r.assignment, None).is_empty());

    // Input order does not matter.
    let mut rn = nodes.clone();
    rn.reverse();
    let mut ra = apps.clone();
    ra.reverse();
    assert_eq!(
        schedule(&rn, &ra, &Assignment::new()).assignment,
        r.assignment
    );

    // Re-scheduling the result changes nothing.
    let again = schedule(&nodes, &apps, &r.assignment);
    assert_eq!(again.assignment, r.assignment);
    assert!(again.migrations.is_empty());

    // The reasons say which constraint eliminated which nodes.
    let why = &r.reasons[&a("convex")];
    assert!(
        why.contains("OnLabel(tier=storage) eliminated node-1, node-2, node-3, node-5"),
        "{why}"
    );
    assert!(r.reasons[&a("worker")].contains("AwayFromApp(convex) eliminated node-4"));
}
