//! The planner's policy around the scheduler: registration, actual leaders, moves, drains,
//! make-before-break, measured load in rebalance plans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::planner::{PlanMove, Planner, RebalanceOptions};
use cluster_core::wire::rebalance::{ResourceLimits, ResourceThresholds};
use cluster_core::{Labels, Mode, NodeLoad};
use cluster_placement::planner::{
    app_spec, apply_moves, follow_leaders, make_before_break, node_infos, only_where_registered,
    over_limit, resource_step, schedule_with_drains, throttle_drains,
};
use cluster_placement::{Constraint, PlacementPlanner, PlacementSpec, RebalancePolicy, Resources};
use common::{a, ids, n, place, plan_node, request, running};

fn nodes_of(plan: &cluster_core::planner::PlanOutcome, app: &str) -> Vec<String> {
    plan.assignment.apps[&a(app)]
        .nodes
        .iter()
        .map(|x| x.to_string())
        .collect()
}

#[test]
fn node_infos_read_capacity_labels_and_treat_draining_nodes_as_unhealthy() {
    let mut big = plan_node("n1");
    big.labels = Labels::from_pairs([("cpu", "4"), ("memory", "8Gi")]).unwrap();
    let mut draining = plan_node("n2");
    draining.draining = true;
    let mut bad = plan_node("n3");
    bad.labels = Labels::from_pairs([("cpu", "lots")]).unwrap();
    bad.cordoned = true;
    let infos = node_infos(&request(vec![big, draining, bad], &[]));
    assert_eq!(infos[0].capacity.cpu_millis, 4000);
    assert_eq!(infos[0].capacity.memory_bytes, 8 << 30);
    assert!(infos[0].healthy && !infos[0].draining);
    assert!(!infos[1].healthy && infos[1].draining);
    assert_eq!(infos[2].capacity, Resources::UNLIMITED);
    assert!(infos[2].cordoned);
}

#[test]
fn an_app_registered_on_some_nodes_is_constrained_to_them() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2"), plan_node("n3")],
        &[("web", Mode::Spread), ("db", Mode::Spread)],
    );
    r.nodes[2].hosts.remove(&a("db"));
    let mut specs = vec![
        common::app("web", Mode::Spread),
        common::app("db", Mode::Spread),
    ];
    only_where_registered(&mut specs, &r);
    assert!(specs[0].constraints.is_empty());
    assert_eq!(
        specs[1].constraints,
        vec![Constraint::OnNodes {
            nodes: vec![n("n1"), n("n2")]
        }]
    );
}

#[test]
fn the_preferred_leader_follows_the_actual_leader_unless_a_move_is_requested() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2"), plan_node("n3")],
        &[("db", Mode::Singleton), ("q", Mode::Singleton)],
    );
    place(&mut r, "db", &["n1", "n2"]);
    place(&mut r, "q", &["n1", "n2"]);
    r.nodes[1].leading = BTreeSet::from([a("db"), a("q")]);
    // An unplaced node claiming leadership changes nothing.
    r.nodes[2].leading = BTreeSet::from([a("db")]);
    r.moves.push(PlanMove {
        app: a("q"),
        from: n("n2"),
        to: Some(n("n1")),
    });
    let mut current = r.current.clone();
    follow_leaders(&mut current, &r);
    assert_eq!(ids(&current.apps[&a("db")].nodes), ["n2", "n1"]);
    assert_eq!(ids(&current.apps[&a("q")].nodes), ["n1", "n2"]);
}

#[test]
fn moves_steer_singletons_to_the_target_and_replicas_off_the_source() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2"), plan_node("n3")],
        &[("db", Mode::Singleton), ("web", Mode::Replicas { n: 2 })],
    );
    place(&mut r, "db", &["n1", "n2", "n3"]);
    place(&mut r, "web", &["n1", "n2"]);
    r.moves = vec![
        PlanMove {
            app: a("db"),
            from: n("n1"),
            to: Some(n("n3")),
        },
        PlanMove {
            app: a("web"),
            from: n("n1"),
            to: None,
        },
    ];
    let mut specs = vec![
        common::app("db", Mode::Singleton),
        common::app("web", Mode::Replicas { n: 2 }),
    ];
    let mut current = r.current.clone();
    apply_moves(&mut specs, &mut current, &r);
    assert_eq!(ids(&current.apps[&a("db")].nodes), ["n3", "n1", "n2"]);
    assert_eq!(ids(&current.apps[&a("web")].nodes), ["n2"]);
    assert_eq!(
        specs[1].constraints,
        vec![Constraint::OnNodes {
            nodes: vec![n("n2"), n("n3")]
        }]
    );
    // Through the planner: the Replicas instance lands on the only other node.
    let plan = PlacementPlanner::default().plan(&r).unwrap();
    assert_eq!(nodes_of(&plan, "web"), ["n2", "n3"]);
    assert_eq!(nodes_of(&plan, "db")[0], "n3");
}

#[test]
fn a_gentle_drain_blocks_what_cannot_move_and_a_forced_drain_stops_it() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2")],
        &[
            ("pinned", Mode::Replicas { n: 1 }),
            ("web", Mode::Replicas { n: 1 }),
        ],
    );
    let mut rules = PlacementSpec::current();
    rules.constraints.push(Constraint::OnNodes {
        nodes: vec![n("n1")],
    });
    r.apps[0].placement = Some(rules.to_json().unwrap());
    place(&mut r, "pinned", &["n1"]);
    place(&mut r, "web", &["n1"]);
    r.nodes[0].draining = true;

    let planner = PlacementPlanner::default();
    let gentle = planner.plan(&r).unwrap();
    assert_eq!(nodes_of(&gentle, "pinned"), ["n1"]);
    assert!(
        gentle.blocked.contains_key(&a("pinned")),
        "{:?}",
        gentle.blocked
    );
    assert_eq!(nodes_of(&gentle, "web"), ["n2"]);

    r.nodes[0].drain_force = true;
    let forced = planner.plan(&r).unwrap();
    assert!(!forced.assignment.apps.contains_key(&a("pinned")));
    assert!(forced.blocked.is_empty());
    assert!(
        forced.pending.contains_key(&a("pinned")),
        "{:?}",
        forced.pending
    );

    // The same through the function: the blocked app keeps its node.
    r.nodes[0].drain_force = false;
    let specs = vec![
        app_spec(rules, a("pinned"), Mode::Replicas { n: 1 }, None),
        common::app("web", Mode::Replicas { n: 1 }),
    ];
    let mut pending = BTreeMap::new();
    let (next, blocked) =
        schedule_with_drains(&node_infos(&r), &specs, &r.current, &r, &mut pending);
    assert_eq!(ids(&next.apps[&a("pinned")].nodes), ["n1"]);
    assert_eq!(blocked.keys().collect::<Vec<_>>(), [&a("pinned")]);
}

#[test]
fn a_throttled_drain_keeps_unreleased_apps_on_the_node() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2")],
        &[
            ("a", Mode::Replicas { n: 1 }),
            ("b", Mode::Replicas { n: 1 }),
        ],
    );
    place(&mut r, "a", &["n1"]);
    place(&mut r, "b", &["n1"]);
    r.current.version = 4;
    r.nodes[0].draining = true;
    r.nodes[0].drain_release = Some(BTreeSet::from([a("a")]));
    let plan = PlacementPlanner::default().plan(&r).unwrap();
    assert_eq!(nodes_of(&plan, "a"), ["n2"]);
    assert_eq!(nodes_of(&plan, "b"), ["n1"]);
    assert_eq!(plan.assignment.version, 5);

    // Releasing nothing keeps everything: the version stays.
    let current = r.current.clone();
    let mut next = current.clone();
    next.apps.get_mut(&a("a")).unwrap().nodes = vec![n("n2")];
    next.version = 5;
    r.nodes[0].drain_release = Some(BTreeSet::new());
    let (mut pending, mut blocked) = (BTreeMap::new(), BTreeMap::new());
    pending.insert(a("a"), "x".to_owned());
    throttle_drains(&mut next, &current, &r, &mut pending, &mut blocked);
    assert!(next.same_placement(&current));
    assert_eq!(next.version, 4);
    assert!(pending.is_empty());
}

#[test]
fn make_before_break_keeps_the_old_node_until_the_new_one_runs() {
    let mut r = request(
        vec![plan_node("n1"), plan_node("n2"), plan_node("n3")],
        &[("web", Mode::Replicas { n: 1 }), ("db", Mode::Singleton)],
    );
    place(&mut r, "web", &["n1"]);
    place(&mut r, "db", &["n1"]);
    running(&mut r, "web", &["n1"]);
    running(&mut r, "db", &["n1"]);
    let current = r.current.clone();
    let mut next = current.clone();
    next.apps.get_mut(&a("web")).unwrap().nodes = vec![n("n2")];
    next.apps.get_mut(&a("db")).unwrap().nodes = vec![n("n2")];

    let mut kept = next.clone();
    make_before_break(&mut kept, &current, &r);
    assert_eq!(ids(&kept.apps[&a("web")].nodes), ["n2", "n1"]);
    // Singletons hand over through the election, not by overlap.
    assert_eq!(ids(&kept.apps[&a("db")].nodes), ["n2"]);

    running(&mut r, "web", &["n2"]);
    let mut ready = next.clone();
    make_before_break(&mut ready, &current, &r);
    assert_eq!(ids(&ready.apps[&a("web")].nodes), ["n2"]);

    // An old node that is unhealthy (or draining) is not kept.
    r.nodes[1].running.clear();
    r.nodes[0].healthy = false;
    let mut gone = next;
    make_before_break(&mut gone, &current, &r);
    assert_eq!(ids(&gone.apps[&a("web")].nodes), ["n2"]);
}

#[test]
fn invalid_rules_make_the_app_pending_with_the_reason() {
    let mut r = request(vec![plan_node("n1")], &[("web", Mode::Spread)]);
    r.apps[0].placement = Some(serde_json::json!({"v": 9}));
    let plan = PlacementPlanner::default().plan(&r).unwrap();
    let why = &plan.pending[&a("web")];
    assert!(why.starts_with("invalid placement rules:"), "{why}");
    assert!(why.contains("version 9"), "{why}");
}

fn loaded(id: &str, cpu: f64) -> cluster_core::planner::PlanNode {
    let mut node = plan_node(id);
    node.load = Some(NodeLoad::from_fractions(cpu, 0.1, 0.1));
    node
}

#[test]
fn over_limit_names_the_dimension_and_ignores_unmeasured_nodes() {
    let r = request(vec![loaded("n1", 0.9), plan_node("n2")], &[]);
    let limits = ResourceLimits {
        cpu: 0.8,
        memory: 0.0,
        disk: 0.0,
    };
    let why = over_limit(&r, Some(&n("n1")), &limits).unwrap();
    assert_eq!(why, "target n1 is over the max node load (cpu 0.90 > 0.80)");
    assert_eq!(over_limit(&r, Some(&n("n2")), &limits), None);
    assert_eq!(over_limit(&r, None, &limits), None);
}

#[test]
fn resource_step_moves_the_heaviest_app_from_the_hottest_to_the_coolest_node() {
    let mut r = request(
        vec![loaded("n1", 0.9), loaded("n2", 0.5), loaded("n3", 0.1)],
        &[
            ("light", Mode::Replicas { n: 1 }),
            ("heavy", Mode::Replicas { n: 1 }),
        ],
    );
    place(&mut r, "light", &["n1"]);
    place(&mut r, "heavy", &["n1"]);
    let nodes = node_infos(&r);
    let specs = vec![
        common::app("light", Mode::Replicas { n: 1 }),
        common::app("heavy", Mode::Replicas { n: 1 })
            .with_resources(Resources::parse("2", "0", "0").unwrap()),
    ];
    let options = RebalanceOptions {
        resource_aware: true,
        resource_thresholds: ResourceThresholds {
            cpu_imbalance: 0.3,
            memory_imbalance: 0.0,
            disk_imbalance: 0.0,
        },
        ..RebalanceOptions::default()
    };
    let policy = RebalancePolicy::default();
    let current = r.current.clone();
    let step = resource_step(&r, &nodes, &specs, &current, &policy, &options).unwrap();
    assert_eq!(step.app, a("heavy"));
    assert_eq!(step.from, Some(n("n1")));
    assert_eq!(step.to, Some(n("n3")));
    assert_eq!(step.kind, "move");

    // No target under the max node load: no step.
    let capped = RebalanceOptions {
        max_node_load: ResourceLimits {
            cpu: 0.05,
            memory: 0.0,
            disk: 0.0,
        },
        ..options.clone()
    };
    assert_eq!(
        resource_step(&r, &nodes, &specs, &current, &policy, &capped),
        None
    );
    // Balanced within the threshold: no step.
    let lenient = RebalanceOptions {
        resource_thresholds: ResourceThresholds {
            cpu_imbalance: 0.9,
            memory_imbalance: 0.0,
            disk_imbalance: 0.0,
        },
        ..options
    };
    assert_eq!(
        resource_step(&r, &nodes, &specs, &current, &policy, &lenient),
        None
    );
}

#[test]
fn rebalance_refuses_steps_onto_overloaded_targets() {
    let mut r = request(
        vec![loaded("n1", 0.1), loaded("n2", 0.95)],
        &[
            ("web", Mode::Replicas { n: 1 }),
            ("api", Mode::Replicas { n: 1 }),
        ],
    );
    place(&mut r, "web", &["n1"]);
    place(&mut r, "api", &["n1"]);
    let planner = PlacementPlanner::default();
    let free = planner.rebalance(&r, None, Some(0.1)).unwrap();
    assert_eq!(free.migrations.len(), 1, "{free:?}");
    let options = RebalanceOptions {
        threshold: Some(0.1),
        max_node_load: ResourceLimits {
            cpu: 0.9,
            memory: 0.0,
            disk: 0.0,
        },
        ..RebalanceOptions::default()
    };
    let capped = planner.rebalance_with(&r, &options).unwrap();
    assert!(capped.migrations.is_empty(), "{capped:?}");
    assert_eq!(capped.rejected.len(), 1);
    assert!(
        capped.rejected[0].contains("target n2 is over the max node load (cpu 0.95 > 0.90)"),
        "{capped:?}"
    );
    // Only one app: the other is never moved.
    let only = planner.rebalance(&r, Some(&a("api")), Some(0.1)).unwrap();
    assert!(
        only.migrations.iter().all(|m| m.app == a("api")),
        "{only:?}"
    );
}
