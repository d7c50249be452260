//! Rebalance, drain and evacuation planning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use cluster_core::{Labels, Mode};
use cluster_placement::model::dsl::*;
use cluster_placement::{
    Assignment, Migration, MigrationKind, RebalancePolicy, RebalanceStrategy, imbalance,
    plan_drain, plan_evacuate, plan_rebalance, schedule, verify,
};
use common::*;

fn nodes(k: usize) -> Vec<cluster_placement::NodeInfo> {
    (1..=k)
        .map(|i| {
            node(
                &format!("n{i}"),
                &[("zone", if i % 2 == 0 { "b" } else { "a" })],
            )
        })
        .collect()
}

fn replica_apps(k: usize) -> Vec<cluster_placement::AppSpec> {
    (0..k)
        .map(|i| app(&format!("app{i}"), Mode::Replicas { n: 1 }))
        .collect()
}

/// 12 single-replica apps on 3 nodes, then 3 more nodes join (sticky placement moves nothing).
fn crowded() -> (
    Vec<cluster_placement::NodeInfo>,
    Vec<cluster_placement::AppSpec>,
    Assignment,
) {
    let apps = replica_apps(12);
    let first = schedule(&nodes(3), &apps, &Assignment::new()).assignment;
    let six = nodes(6);
    let after_join = schedule(&six, &apps, &first);
    assert!(after_join.migrations.is_empty());
    (six, apps, after_join.assignment)
}

#[test]
fn balanced_cluster_plans_nothing() {
    let apps = replica_apps(12);
    let ns = nodes(6);
    let a0 = schedule(&ns, &apps, &Assignment::new()).assignment;
    assert_eq!(imbalance(&ns, &apps, &a0), 0.0);
    let plan = plan_rebalance(&ns, &apps, &a0, &RebalancePolicy::default());
    assert!(plan.is_empty());
    assert_eq!(plan.assignment, a0);
}

#[test]
fn rebalance_evens_out_respects_max_concurrent_and_converges() {
    let (ns, apps, cur) = crowded();
    let before = imbalance(&ns, &apps, &cur);
    assert!(before > 0.2, "{before}");
    let policy = RebalancePolicy::default();
    let plan = plan_rebalance(&ns, &apps, &cur, &policy);
    assert_eq!(plan.migrations.len(), 2, "max_concurrent = 2");
    assert!(
        plan.migrations
            .iter()
            .all(|m| m.kind == MigrationKind::Move)
    );
    assert!(plan.imbalance_after <= plan.imbalance_before);
    assert_eq!(plan.assignment.version, cur.version + 1);

    // Keep applying waves until empty: it converges, and then stays put.
    let mut state = cur.clone();
    let mut waves = 0;
    loop {
        let p = plan_rebalance(&ns, &apps, &state, &policy);
        if p.is_empty() {
            break;
        }
        assert!(verify(&ns, &apps, &p.assignment, Some(&state)).is_empty());
        state = p.assignment;
        waves += 1;
        assert!(waves < 10);
    }
    assert_eq!(imbalance(&ns, &apps, &state), 0.0);
    // And the scheduler keeps the rebalanced placement.
    assert!(schedule(&ns, &apps, &state).migrations.is_empty());

    // Unlimited: one plan, and re-planning after applying it yields nothing.
    let all = RebalancePolicy {
        max_concurrent: 0,
        ..RebalancePolicy::default()
    };
    let p = plan_rebalance(&ns, &apps, &cur, &all);
    assert_eq!(p.migrations.len(), 6);
    assert!(plan_rebalance(&ns, &apps, &p.assignment, &all).is_empty());
}

#[test]
fn threshold_gives_hysteresis() {
    let (ns, apps, cur) = crowded();
    let lazy = RebalancePolicy {
        threshold: 10.0,
        ..RebalancePolicy::default()
    };
    assert!(plan_rebalance(&ns, &apps, &cur, &lazy).is_empty());
}

#[test]
fn excluded_and_unlabelled_apps_stay() {
    let (ns, apps, cur) = crowded();
    let policy = RebalancePolicy {
        max_concurrent: 0,
        exclude_apps: apps.iter().map(|a| a.name.clone()).collect(),
        ..RebalancePolicy::default()
    };
    assert!(plan_rebalance(&ns, &apps, &cur, &policy).is_empty());
    let policy = RebalancePolicy {
        max_concurrent: 0,
        include_labels: Labels::from_pairs([("rebalance", "true")]).unwrap(),
        ..RebalancePolicy::default()
    };
    assert!(plan_rebalance(&ns, &apps, &cur, &policy).is_empty());
    let mut labelled = apps.clone();
    labelled[0].labels.insert("rebalance", "true").unwrap();
    let p = plan_rebalance(&ns, &labelled, &cur, &policy);
    assert!(p.migrations.iter().all(|m| m.app == a("app0")));
    assert_eq!(p.migrations.len(), 1);
}

#[test]
fn rebalance_never_breaks_constraints() {
    let (ns, mut apps, cur) = crowded();
    for a in apps.iter_mut().take(6) {
        a.constraints.push(on_nodes([n("n1"), n("n2"), n("n3")]));
    }
    let p = plan_rebalance(
        &ns,
        &apps,
        &cur,
        &RebalancePolicy {
            max_concurrent: 0,
            ..RebalancePolicy::default()
        },
    );
    assert!(!p.is_empty());
    assert!(verify(&ns, &apps, &p.assignment, Some(&cur)).is_empty());
}

#[test]
fn binpack_consolidates_and_stops() {
    let apps = replica_apps(4);
    let ns = nodes(4);
    let spread = schedule(&ns, &apps, &Assignment::new()).assignment;
    let policy = RebalancePolicy {
        max_concurrent: 0,
        strategy: RebalanceStrategy::BinPack,
        ..RebalancePolicy::default()
    };
    let p = plan_rebalance(&ns, &apps, &spread, &policy);
    let loads = cluster_placement::node_loads(&ns, &apps, &p.assignment);
    assert_eq!(loads.values().filter(|&&l| l > 0).count(), 1, "{loads:?}");
    assert!(plan_rebalance(&ns, &apps, &p.assignment, &policy).is_empty());
}

#[test]
fn zone_aware_rebalance_spreads_replicas_across_zones() {
    let ns = nodes(4); // n1,n3 zone a; n2,n4 zone b
    let apps = vec![app("z", Mode::Replicas { n: 2 })];
    let mut cur = Assignment::new();
    cur.apps.insert(
        a("z"),
        cluster_placement::AppPlacement {
            nodes: vec![n("n1"), n("n3")],
            partitions: None,
        },
    );
    let policy = RebalancePolicy {
        max_concurrent: 0,
        strategy: RebalanceStrategy::ZoneAware { key: "zone".into() },
        ..RebalancePolicy::default()
    };
    let p = plan_rebalance(&ns, &apps, &cur, &policy);
    assert_eq!(p.migrations.len(), 1);
    assert!(plan_rebalance(&ns, &apps, &p.assignment, &policy).is_empty());
}

#[test]
fn custom_rebalance_proposals_are_validated() {
    let (ns, mut apps, cur) = crowded();
    apps[0].constraints.push(on_nodes([n("n1")]));
    let on_n1 = cur.app(&a("app0")).unwrap().nodes[0].clone();
    assert_eq!(on_n1, n("n1"));
    let policy = RebalancePolicy {
        max_concurrent: 0,
        strategy: RebalanceStrategy::Custom(Arc::new(
            |_s: &cluster_placement::RebalanceState<'_>| {
                vec![
                    Migration {
                        app: a("app0"),
                        from: Some(n("n1")),
                        to: Some(n("n6")),
                        kind: MigrationKind::Move,
                    },
                    Migration {
                        app: a("app1"),
                        from: Some(n("n2")),
                        to: Some(n("n5")),
                        kind: MigrationKind::Move,
                    },
                ]
            },
        )),
        ..RebalancePolicy::default()
    };
    let p = plan_rebalance(&ns, &apps, &cur, &policy);
    assert_eq!(p.rejected.len(), 1);
    assert!(
        p.rejected[0].1.contains("OnNodes(n1) does not hold on n6"),
        "{:?}",
        p.rejected
    );
    assert_eq!(p.migrations.len(), 1);
    assert_eq!(p.migrations[0].app, a("app1"));
}

#[test]
fn drain_moves_everything_it_can_and_reports_the_rest() {
    let ns = nodes(3);
    let apps = vec![
        app("web", Mode::Spread),
        app("db", Mode::Singleton),
        app("w", Mode::Replicas { n: 2 }),
        app("pinned", Mode::Replicas { n: 1 }).with(on_nodes([n("n1")])),
        app("kv", Mode::Ring { partitions: 16 }),
    ];
    let cur = schedule(&ns, &apps, &Assignment::new()).assignment;
    let d = plan_drain(&ns, &apps, &cur, &n("n1"), false);
    assert_eq!(d.stuck.len(), 1);
    assert_eq!(d.stuck[0].0, a("pinned"));
    assert!(d.stuck[0].1.contains("stays"), "{}", d.stuck[0].1);
    assert_eq!(d.assignment.apps_on(&n("n1")), vec![&a("pinned")]);
    assert!(!d.complete());
    let w = &d.assignment.app(&a("w")).unwrap().nodes;
    assert_eq!(w.len(), 2);
    assert!(!w.contains(&n("n1")));
    assert!(
        d.assignment
            .app(&a("kv"))
            .unwrap()
            .partitions
            .as_ref()
            .unwrap()
            .iter()
            .all(|o| *o != n("n1"))
    );

    let forced = plan_drain(&ns, &apps, &cur, &n("n1"), true);
    assert!(forced.complete());
    assert!(forced.stuck[0].1.contains("stopped without replacement"));
    assert!(forced.assignment.app(&a("pinned")).is_none());
}

#[test]
fn evacuate_by_label_selector() {
    let ns = nodes(4);
    let apps = vec![app("w", Mode::Replicas { n: 2 }), app("web", Mode::Spread)];
    let cur = schedule(&ns, &apps, &Assignment::new()).assignment;
    let sel = Labels::from_pairs([("zone", "a")]).unwrap();
    let e = plan_evacuate(&ns, &apps, &cur, &sel, false);
    assert_eq!(ids(&e.nodes), ["n1", "n3"]);
    assert!(e.complete());
    assert!(e.stuck.is_empty());
    assert_eq!(ids(&e.assignment.app(&a("w")).unwrap().nodes).len(), 2);
    assert!(
        plan_evacuate(&ns, &apps, &cur, &Labels::new(), false)
            .nodes
            .is_empty()
    );
}
