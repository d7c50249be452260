//! Scheduler behaviour: constraints, pending, cordon/health, stickiness, resources, strategies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_core::Mode;
use cluster_placement::model::dsl::*;
use cluster_placement::{
    Assignment, HashRing, MigrationKind, Resources, StrategyKind, schedule, verify,
};
use common::*;

fn three() -> Vec<cluster_placement::NodeInfo> {
    vec![
        node("n1", &[("zone", "a")]),
        node("n2", &[("zone", "b")]),
        node("n3", &[("zone", "c")]),
    ]
}

#[test]
fn pending_reason_names_the_constraints_and_the_app_is_placed_once_a_node_qualifies() {
    let mut nodes = three();
    nodes[1].cordoned = true;
    let apps = vec![app("db", Mode::Singleton).with(on_label("role", "storage"))];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert!(r.is_pending(&a("db")));
    assert_eq!(
        r.pending[0].1,
        "no eligible node: OnLabel(role=storage) eliminated n1, n3; node cordoned eliminated n2"
    );
    assert!(r.assignment.app(&a("db")).is_none());
    assert_eq!(r.assignment.version, 0, "nothing changed");

    nodes[2].labels.insert("role", "storage").unwrap();
    let r2 = schedule(&nodes, &apps, &r.assignment);
    assert_eq!(ids(&r2.assignment.app(&a("db")).unwrap().nodes), ["n3"]);
    assert_eq!(r2.assignment.version, 1);
    assert_eq!(r2.migrations.len(), 1);
    assert_eq!(r2.migrations[0].kind, MigrationKind::Start);
}

#[test]
fn cordoned_nodes_keep_existing_instances_but_get_no_new_ones() {
    let mut nodes = three();
    let apps = vec![app("web", Mode::Spread)];
    let first = schedule(&nodes, &apps, &Assignment::new()).assignment;
    nodes[0].cordoned = true;
    let again = schedule(&nodes, &apps, &first);
    assert_eq!(again.assignment.apps, first.apps, "cordon does not evict");
    let apps2 = vec![app("web", Mode::Spread), app("new", Mode::Spread)];
    let r = schedule(&nodes, &apps2, &first);
    assert_eq!(
        ids(&r.assignment.app(&a("new")).unwrap().nodes),
        ["n2", "n3"]
    );
    assert!(verify(&nodes, &apps2, &r.assignment, Some(&first)).is_empty());
}

#[test]
fn replicas_are_sticky_and_replace_only_what_was_lost() {
    let mut nodes: Vec<_> = (1..=5).map(|i| node(&format!("n{i}"), &[])).collect();
    let apps = vec![app("w", Mode::Replicas { n: 3 })];
    let r1 = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(
        ids(&r1.assignment.app(&a("w")).unwrap().nodes),
        ["n1", "n2", "n3"]
    );

    // A join moves nothing.
    nodes.push(node("n0", &[]));
    let r2 = schedule(&nodes, &apps, &r1.assignment);
    assert!(r2.migrations.is_empty());

    // Losing n2 replaces exactly that replica.
    nodes.iter_mut().find(|x| x.id == n("n2")).unwrap().healthy = false;
    let r3 = schedule(&nodes, &apps, &r2.assignment);
    let placed = ids(&r3.assignment.app(&a("w")).unwrap().nodes);
    assert_eq!(placed.len(), 3);
    assert!(placed.contains(&"n1") && placed.contains(&"n3") && !placed.contains(&"n2"));
    assert_eq!(r3.migrations.len(), 1);
    assert_eq!(r3.migrations[0].kind, MigrationKind::Move);
    assert_eq!(r3.migrations[0].from, Some(n("n2")));

    // Scaling down keeps a subset.
    let apps1 = vec![app("w", Mode::Replicas { n: 1 })];
    let r4 = schedule(&nodes, &apps1, &r3.assignment);
    let kept = &r4.assignment.app(&a("w")).unwrap().nodes;
    assert_eq!(kept.len(), 1);
    assert!(r3.assignment.app(&a("w")).unwrap().nodes.contains(&kept[0]));
}

#[test]
fn replicas_degrade_when_too_few_nodes_are_eligible() {
    let nodes = three();
    let apps = vec![app("w", Mode::Replicas { n: 3 }).with(avoid_label("zone", "a"))];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(r.assignment.app(&a("w")).unwrap().nodes.len(), 2);
    assert_eq!(
        r.degraded[0].1,
        "only 2 of 3 replicas placed; AvoidLabel(zone=a) eliminated n1"
    );
}

#[test]
fn resources_are_accounted_across_apps_and_existing_instances_keep_their_room() {
    let cap = Resources::parse("4", "6Gi", "").unwrap();
    let nodes: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|i| node(i, &[]).with_capacity(cap))
        .collect();
    let need = Resources::parse("1", "4Gi", "").unwrap();
    let apps = vec![
        app("b-db", Mode::Singleton).with_resources(need),
        app("c-db", Mode::Replicas { n: 1 }).with_resources(need),
    ];
    let mut apps = apps;
    apps[0].standbys = Some(0);
    let r = schedule(&nodes, &apps, &Assignment::new());
    let b = r.assignment.app(&a("b-db")).unwrap().nodes.clone();
    let c = r.assignment.app(&a("c-db")).unwrap().nodes.clone();
    assert_ne!(b, c, "4Gi + 4Gi does not fit in 6Gi");

    // A third app sorted first by name must not evict the existing ones.
    apps.push(app("a-db", Mode::Replicas { n: 1 }).with_resources(need));
    let r2 = schedule(&nodes, &apps, &r.assignment);
    assert_eq!(r2.assignment.app(&a("b-db")).unwrap().nodes, b);
    assert_eq!(r2.assignment.app(&a("c-db")).unwrap().nodes, c);
    assert!(r2.is_pending(&a("a-db")));
    assert!(
        r2.pending[0]
            .1
            .contains("insufficient memory (need 4Gi, free 2Gi) eliminated n1, n2"),
        "{}",
        r2.pending[0].1
    );
    assert!(verify(&nodes, &apps, &r2.assignment, None).is_empty());
}

#[test]
fn with_app_co_locates_and_waits_for_its_target() {
    let nodes = three();
    let apps = vec![
        app("cache", Mode::Replicas { n: 2 }),
        app("side", Mode::Spread).with(with_app(a("cache"))),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(
        r.assignment.app(&a("side")).unwrap().nodes,
        r.assignment.app(&a("cache")).unwrap().nodes
    );
    let apps = vec![
        app("cache", Mode::Replicas { n: 2 }).with(on_label("zone", "x")),
        app("side", Mode::Spread).with(with_app(a("cache"))),
        app("lonely", Mode::Spread).with(with_app(a("ghost"))),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert!(r.is_pending(&a("cache")));
    let why: std::collections::BTreeMap<_, _> = r.pending.iter().cloned().collect();
    assert_eq!(why[&a("side")], "WithApp(cache): app cache is pending");
    assert_eq!(
        why[&a("lonely")],
        "WithApp(ghost): app ghost is not registered"
    );
}

#[test]
fn dependency_cycles_are_pending() {
    let nodes = three();
    let apps = vec![
        app("x", Mode::Spread).with(away_from_app(a("y"))),
        app("y", Mode::Spread).with(away_from_app(a("x"))),
        app("z", Mode::Spread),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert!(r.is_pending(&a("x")) && r.is_pending(&a("y")));
    assert!(r.pending[0].1.contains("dependency cycle among: x, y"));
    assert!(r.assignment.app(&a("z")).is_some());
}

#[test]
fn singleton_prefers_then_sticks_and_fails_over_to_the_next_candidate() {
    let mut nodes = three();
    let apps = vec![
        app("db", Mode::Singleton)
            .prefer(prefer_node(n("n2"), 100))
            .prefer(prefer_label("zone", "c", 50)),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(
        ids(&r.assignment.app(&a("db")).unwrap().nodes),
        ["n2", "n3", "n1"]
    );

    // Sticky: a new, more preferred node does not steal leadership.
    nodes.push(node("n9", &[("zone", "c")]));
    let mut apps2 = apps.clone();
    apps2[0] = apps2[0].clone().prefer(prefer_node(n("n9"), 1000));
    let r2 = schedule(&nodes, &apps2, &r.assignment);
    assert_eq!(
        r2.assignment.app(&a("db")).unwrap().leader(),
        Some(&n("n2"))
    );

    // Leader node fails: the next candidate leads.
    nodes[1].healthy = false;
    let r3 = schedule(&nodes, &apps2, &r2.assignment);
    assert_eq!(
        r3.assignment.app(&a("db")).unwrap().leader(),
        Some(&n("n3"))
    );
    let leader_moves: Vec<_> = r3
        .migrations
        .iter()
        .filter(|m| m.kind == MigrationKind::Leader)
        .collect();
    assert_eq!(leader_moves.len(), 1);
    assert_eq!(leader_moves[0].from, Some(n("n2")));
    assert_eq!(leader_moves[0].to, Some(n("n3")));
}

#[test]
fn singleton_standbys_limit_candidates() {
    let nodes = three();
    let mut spec = app("db", Mode::Singleton);
    spec.standbys = Some(1);
    let r = schedule(&nodes, &[spec], &Assignment::new());
    assert_eq!(r.assignment.app(&a("db")).unwrap().nodes.len(), 2);
}

#[test]
fn strategies_rank_nodes() {
    let cap = Resources::parse("10", "", "").unwrap();
    let nodes = vec![
        node("n1", &[("zone", "a")]).with_capacity(cap),
        node("n2", &[("zone", "a")]).with_capacity(cap),
        node("n3", &[("zone", "b")]).with_capacity(cap),
        node("n4", &[("zone", "b")]).with_capacity(cap),
    ];
    let one_cpu = Resources::parse("1", "", "").unwrap();
    // BinPack puts replicas of successive apps on the fullest nodes.
    let apps = vec![
        app("a1", Mode::Replicas { n: 1 })
            .with_resources(one_cpu)
            .with_strategy(StrategyKind::BinPack),
        app("a2", Mode::Replicas { n: 1 })
            .with_resources(one_cpu)
            .with_strategy(StrategyKind::BinPack),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(ids(&r.assignment.app(&a("a2")).unwrap().nodes), ["n1"]);
    // SpreadEvenly would not.
    let apps = vec![
        app("a1", Mode::Replicas { n: 1 }),
        app("a2", Mode::Replicas { n: 1 }),
    ];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(ids(&r.assignment.app(&a("a2")).unwrap().nodes), ["n2"]);
    // ZoneAware spreads across zones first.
    let apps = vec![app("z", Mode::Replicas { n: 2 }).with_strategy(StrategyKind::zone_aware())];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(ids(&r.assignment.app(&a("z")).unwrap().nodes), ["n1", "n3"]);
    // A custom closure ranks in reverse id order.
    let rev = StrategyKind::custom(
        |_: &cluster_placement::AppSpec, c: &[cluster_placement::Candidate<'_>]| {
            (0..c.len()).rev().collect::<Vec<_>>()
        },
    );
    let apps = vec![app("c", Mode::Replicas { n: 2 }).with_strategy(rev)];
    let r = schedule(&nodes, &apps, &Assignment::new());
    assert_eq!(ids(&r.assignment.app(&a("c")).unwrap().nodes), ["n4", "n3"]);
}

#[test]
fn ring_app_gets_a_balanced_partition_map_and_a_routing_view() {
    let mut nodes = three();
    let apps = vec![app("kv", Mode::Ring { partitions: 256 })];
    let r = schedule(&nodes, &apps, &Assignment::new());
    let ring = HashRing::from_assignment(&r.assignment, &a("kv")).unwrap();
    assert_eq!(ring.members(), &[n("n1"), n("n2"), n("n3")]);
    let counts: Vec<usize> = ring
        .members()
        .iter()
        .map(|m| ring.owned_partitions(m).len())
        .collect();
    assert!(counts.iter().all(|&c| c == 85 || c == 86), "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 256);
    let owner = ring.node_for("user:123").clone();
    assert!(ring.owns_key(&owner, "user:123"));
    assert!(
        ring.owned_partitions(&owner)
            .contains(&ring.partition_for("user:123"))
    );

    // A join hands over exactly the new member's share, as partition migrations.
    nodes.push(node("n4", &[]));
    let r2 = schedule(&nodes, &apps, &r.assignment);
    let moved: usize = r2
        .migrations
        .iter()
        .filter_map(|m| match &m.kind {
            MigrationKind::Partitions { partitions } => Some(partitions.len()),
            _ => None,
        })
        .sum();
    assert_eq!(moved, 64);
    assert!(r2.migrations.iter().all(|m| m.to.is_some()));
}

/// Nodes joined in an unlucky order: a zone-aware Replicas(2) app was placed on the two nodes
/// of zone `a` before n3 (zone `b`) existed. Scheduling again restores the zone spread with one
/// planned move (the last-chosen instance of the shared zone goes to the new zone), and a
/// preference is never traded away for it.
#[test]
fn zone_aware_replicas_sharing_a_zone_move_to_an_uncovered_zone() {
    let nodes = vec![
        node("n1", &[("zone", "a")]),
        node("n2", &[("zone", "a")]),
        node("n3", &[("zone", "b")]),
    ];
    let spec = app("w", Mode::Replicas { n: 2 }).with_strategy(StrategyKind::zone_aware());
    let first = schedule(&nodes[..2], std::slice::from_ref(&spec), &Assignment::new());
    assert_eq!(
        ids(&first.assignment.app(&a("w")).unwrap().nodes),
        ["n1", "n2"]
    );
    let r = schedule(&nodes, std::slice::from_ref(&spec), &first.assignment);
    assert_eq!(ids(&r.assignment.app(&a("w")).unwrap().nodes), ["n1", "n3"]);
    assert_eq!(r.migrations.len(), 1, "{:?}", r.migrations);
    assert_eq!(r.migrations[0].kind, MigrationKind::Move);
    assert_eq!(
        r.migrations[0].from.as_ref().map(|n| n.as_str()),
        Some("n2")
    );
    // A fixed point: nothing more to repair.
    let again = schedule(&nodes, std::slice::from_ref(&spec), &r.assignment);
    assert_eq!(again.assignment, r.assignment);
    // Without ZoneAware, stickiness keeps the placement.
    let spread = app("w", Mode::Replicas { n: 2 });
    let kept = schedule(&nodes, std::slice::from_ref(&spread), &first.assignment);
    assert_eq!(
        ids(&kept.assignment.app(&a("w")).unwrap().nodes),
        ["n1", "n2"]
    );
    // A node the app prefers is not given up for a zone.
    let preferring = spec.clone().prefer(prefer_label("zone", "a", 10));
    let pref = schedule(&nodes, std::slice::from_ref(&preferring), &first.assignment);
    assert_eq!(
        ids(&pref.assignment.app(&a("w")).unwrap().nodes),
        ["n1", "n2"]
    );
}
