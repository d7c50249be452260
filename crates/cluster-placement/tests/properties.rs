//! Property tests: constraints, exact replica counts, ring balance and movement, determinism,
//! idempotence of scheduling and rebalancing, drain validity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_core::{Labels, Mode, NodeId};
use cluster_placement::model::dsl::*;
use cluster_placement::ring::moved;
use cluster_placement::{
    AppSpec, Assignment, NodeInfo, RebalancePolicy, RebalanceStrategy, Resources, StrategyKind,
    assign_partitions, plan_drain, plan_rebalance, schedule, verify,
};
use common::*;
use proptest::prelude::*;

const ZONES: [&str; 3] = ["a", "b", "c"];
const TIERS: [&str; 2] = ["x", "y"];

#[derive(Debug, Clone)]
struct RawNode {
    zone: usize,
    tier: usize,
    cordoned: bool,
    healthy: bool,
    cpu: Option<u64>,
}

fn raw_node() -> impl Strategy<Value = RawNode> {
    (
        0..3usize,
        0..2usize,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.85),
        prop::option::weighted(0.4, 1..8u64),
    )
        .prop_map(|(zone, tier, cordoned, healthy, cpu)| RawNode {
            zone,
            tier,
            cordoned,
            healthy,
            cpu,
        })
}

fn build_nodes(raw: &[RawNode]) -> Vec<NodeInfo> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut n = node(
                &format!("n{i}"),
                &[("zone", ZONES[r.zone]), ("tier", TIERS[r.tier])],
            );
            n.cordoned = r.cordoned;
            n.healthy = r.healthy;
            if let Some(c) = r.cpu {
                n.capacity = Resources::new(c * 1000, u64::MAX, u64::MAX);
            }
            n
        })
        .collect()
}

#[derive(Debug, Clone)]
struct RawApp {
    mode: u8,
    count: u32,
    constraints: Vec<(u8, usize)>,
    cpu: u64,
    strategy: u8,
    prefer: Option<usize>,
}

fn raw_app() -> impl Strategy<Value = RawApp> {
    (
        0..4u8,
        0..6u32,
        prop::collection::vec((0..6u8, 0..10usize), 0..3),
        prop::option::weighted(0.3, 1..3u64),
        0..3u8,
        prop::option::weighted(0.3, 0..10usize),
    )
        .prop_map(|(mode, count, constraints, cpu, strategy, prefer)| RawApp {
            mode,
            count,
            constraints,
            cpu: cpu.unwrap_or(0),
            strategy,
            prefer,
        })
}

fn build_apps(raw: &[RawApp]) -> Vec<AppSpec> {
    let k = raw.len();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let mode = match r.mode {
                0 => Mode::Singleton,
                1 => Mode::Spread,
                2 => Mode::Replicas { n: r.count },
                _ => Mode::Ring {
                    partitions: 1 + r.count * 7,
                },
            };
            let mut spec = app(&format!("app{i}"), mode)
                .with_resources(Resources::new(r.cpu * 1000, 0, 0))
                .with_strategy(match r.strategy {
                    0 => StrategyKind::SpreadEvenly,
                    1 => StrategyKind::BinPack,
                    _ => StrategyKind::zone_aware(),
                });
            if r.mode == 0 && r.count < 3 {
                spec.standbys = Some(r.count);
            }
            if let Some(p) = r.prefer {
                spec = spec.prefer(prefer_node(n(&format!("n{p}")), 10));
            }
            for &(kind, x) in &r.constraints {
                let other = a(&format!("app{}", x % k.max(1)));
                spec = spec.with(match kind {
                    0 => on_label("zone", ZONES[x % 3]),
                    1 => avoid_label("tier", TIERS[x % 2]),
                    2 => on_nodes(
                        (0..10)
                            .filter(|j| j % 3 != x % 3)
                            .map(|j| n(&format!("n{j}"))),
                    ),
                    3 => on_label("tier", TIERS[x % 2]),
                    4 => with_app(other),
                    _ => away_from_app(other),
                });
            }
            spec
        })
        .collect()
}

fn scenario() -> impl Strategy<Value = (Vec<NodeInfo>, Vec<AppSpec>)> {
    (
        prop::collection::vec(raw_node(), 1..10),
        prop::collection::vec(raw_app(), 1..8),
    )
        .prop_map(|(rn, ra)| (build_nodes(&rn), build_apps(&ra)))
}

fn perturb(nodes: &mut [NodeInfo], which: usize, how: u8) {
    let i = which % nodes.len();
    match how % 4 {
        0 => nodes[i].healthy = !nodes[i].healthy,
        1 => nodes[i].cordoned = !nodes[i].cordoned,
        2 => {
            let z = nodes[i].labels.get("zone").unwrap_or("a").to_string();
            let next = ZONES[(ZONES.iter().position(|x| *x == z).unwrap_or(0) + 1) % 3];
            nodes[i].labels.insert("zone", next).unwrap();
        }
        _ => nodes[i].capacity = Resources::new(2000, u64::MAX, u64::MAX),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_hard_constraint_holds((nodes, apps) in scenario(), which in 0..10usize, how in 0..4u8) {
        let r = schedule(&nodes, &apps, &Assignment::new());
        let v = verify(&nodes, &apps, &r.assignment, Some(&Assignment::new()));
        prop_assert!(v.is_empty(), "{v:?}");
        // After a change (health, cordon, labels, capacity), from the previous assignment.
        let mut changed = nodes.clone();
        perturb(&mut changed, which, how);
        let r2 = schedule(&changed, &apps, &r.assignment);
        let v = verify(&changed, &apps, &r2.assignment, Some(&r.assignment));
        prop_assert!(v.is_empty(), "{v:?}");
        // Every app is either placed or pending, never both.
        for spec in &apps {
            prop_assert!(r2.assignment.app(&spec.name).is_some() != r2.is_pending(&spec.name));
        }
    }

    #[test]
    fn deterministic_and_order_independent((nodes, apps) in scenario()) {
        let r1 = schedule(&nodes, &apps, &Assignment::new());
        let r2 = schedule(&nodes, &apps, &Assignment::new());
        prop_assert_eq!(&r1.assignment, &r2.assignment);
        prop_assert_eq!(&r1.pending, &r2.pending);
        prop_assert_eq!(&r1.reasons, &r2.reasons);
        prop_assert_eq!(&r1.migrations, &r2.migrations);
        let mut rn = nodes.clone();
        rn.reverse();
        let mut ra = apps.clone();
        ra.reverse();
        prop_assert_eq!(schedule(&rn, &ra, &Assignment::new()).assignment, r1.assignment);
    }

    #[test]
    fn scheduling_is_idempotent((nodes, apps) in scenario()) {
        let r1 = schedule(&nodes, &apps, &Assignment::new());
        let r2 = schedule(&nodes, &apps, &r1.assignment);
        prop_assert!(r2.migrations.is_empty(), "{:?}", r2.migrations);
        prop_assert_eq!(&r2.assignment, &r1.assignment);
    }

    #[test]
    fn replicas_count_is_exact_when_enough_nodes_are_eligible(
        raw in prop::collection::vec(raw_node(), 1..12), n_rep in 0..8u32, zone in 0..3usize
    ) {
        let nodes = build_nodes(&raw);
        let spec = app("r", Mode::Replicas { n: n_rep }).with(on_label("zone", ZONES[zone]));
        let eligible = nodes
            .iter()
            .filter(|x| x.schedulable() && x.labels.matches("zone", ZONES[zone]))
            .count();
        let r = schedule(&nodes, &[spec], &Assignment::new());
        let got = r.assignment.app(&a("r")).map_or(0, |p| p.nodes.len());
        prop_assert_eq!(got, (n_rep as usize).min(eligible));
    }

    #[test]
    fn ring_balance_and_movement_bounds(p in 1..600u32, n_nodes in 1..40usize, leaver in 0..40usize) {
        let members: Vec<NodeId> = (0..n_nodes).map(|i| n(&format!("m{i}"))).collect();
        let map = assign_partitions(&members, p, None);
        let (lo, hi) = (p as usize / n_nodes, (p as usize).div_ceil(n_nodes));
        for m in &members {
            let c = map.iter().filter(|o| *o == m).count();
            prop_assert!(c >= lo && c <= hi, "{m}: {c} not in {lo}..={hi}");
        }
        // Deterministic for a membership, whatever its order.
        let mut rev = members.clone();
        rev.reverse();
        prop_assert_eq!(&assign_partitions(&rev, p, None), &map);

        // Join: at most the ideal P/(N+1) partitions move (and so at most 1.15 x ideal).
        let mut joined = members.clone();
        joined.push(n("new-node"));
        let after_join = assign_partitions(&joined, p, Some(&map));
        let mv = moved(&map, &after_join);
        prop_assert!(mv * (n_nodes + 1) <= p as usize, "join moved {mv} of {p} with N={n_nodes}");
        let (jlo, jhi) = (p as usize / (n_nodes + 1), (p as usize).div_ceil(n_nodes + 1));
        for m in &joined {
            let c = after_join.iter().filter(|o| *o == m).count();
            prop_assert!(c >= jlo && c <= jhi);
        }

        // Leave: only the leaver's partitions move (at most ⌈P/N⌉).
        if n_nodes > 1 {
            let gone = &members[leaver % n_nodes];
            let rest: Vec<NodeId> = members.iter().filter(|m| *m != gone).cloned().collect();
            let after_leave = assign_partitions(&rest, p, Some(&map));
            let owned = map.iter().filter(|o| *o == gone).count();
            prop_assert_eq!(moved(&map, &after_leave), owned);
            prop_assert!(owned <= hi);
        }
    }

    #[test]
    fn rebalance_is_valid_and_does_not_oscillate(
        (nodes, apps) in scenario(), extra in 1..4usize, strat in 0..3u8, threshold in 0..3u8
    ) {
        let r = schedule(&nodes, &apps, &Assignment::new());
        let mut grown = nodes.clone();
        for i in 0..extra {
            grown.push(NodeInfo::new(
                n(&format!("x{i}")),
                Labels::from_pairs([("zone", ZONES[i % 3]), ("tier", "x")]).unwrap(),
            ));
        }
        let cur = schedule(&grown, &apps, &r.assignment).assignment;
        let policy = RebalancePolicy {
            threshold: [0.0, 0.2, 0.5][threshold as usize],
            max_concurrent: 0,
            strategy: match strat {
                0 => RebalanceStrategy::SpreadEvenly,
                1 => RebalanceStrategy::BinPack,
                _ => RebalanceStrategy::ZoneAware { key: "zone".into() },
            },
            ..RebalancePolicy::default()
        };
        let plan = plan_rebalance(&grown, &apps, &cur, &policy);
        let v = verify(&grown, &apps, &plan.assignment, Some(&cur));
        prop_assert!(v.is_empty(), "{v:?}");
        if strat == 0 {
            prop_assert!(plan.imbalance_after <= plan.imbalance_before + 1e-9);
        }
        let again = plan_rebalance(&grown, &apps, &plan.assignment, &policy);
        prop_assert!(again.is_empty(), "re-plan moved {:?}", again.migrations);
    }

    #[test]
    fn drain_is_valid_and_empties_what_it_can((nodes, apps) in scenario(), which in 0..10usize, force: bool) {
        let cur = schedule(&nodes, &apps, &Assignment::new()).assignment;
        let target = nodes[which % nodes.len()].id.clone();
        let d = plan_drain(&nodes, &apps, &cur, &target, force);
        let v = verify(&nodes, &apps, &d.assignment, None);
        prop_assert!(v.is_empty(), "{v:?}");
        for app in d.assignment.apps_on(&target) {
            prop_assert!(!force, "forced drain left {app}");
            prop_assert!(d.stuck.iter().any(|(s, _)| s == app), "{app} left without a reason");
        }
    }
}

proptest! {
    /// ZoneAware Replicas(n), from any current placement: the result covers as many zones as
    /// possible (min(n, zones with a node)), keeps every instance whose zone it does not share,
    /// and is a fixed point.
    #[test]
    fn zone_aware_replicas_cover_as_many_zones_as_possible(
        zones in prop::collection::vec(0..3usize, 1..8),
        n in 1..5u32,
        current_mask in prop::collection::vec(any::<bool>(), 8),
    ) {
        let nodes: Vec<NodeInfo> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| node(&format!("n{i}"), &[("zone", ZONES[*z])]))
            .collect();
        let spec = app("w", Mode::Replicas { n }).with_strategy(StrategyKind::zone_aware());
        let mut current = Assignment::new();
        let on: Vec<NodeId> = nodes
            .iter()
            .zip(&current_mask)
            .filter(|(_, m)| **m)
            .map(|(nd, _)| nd.id.clone())
            .take(n as usize)
            .collect();
        if !on.is_empty() {
            current.apps.insert(
                common::a("w"),
                cluster_placement::AppPlacement { nodes: on.clone(), partitions: None },
            );
        }
        let specs = [spec];
        let r = schedule(&nodes, &specs, &current);
        let placed = r.assignment.app(&common::a("w")).unwrap().nodes.clone();
        let zone_of = |id: &NodeId| zones[nodes.iter().position(|nd| &nd.id == id).unwrap()];
        let covered: std::collections::BTreeSet<usize> = placed.iter().map(zone_of).collect();
        let available: std::collections::BTreeSet<usize> = zones.iter().copied().collect();
        prop_assert_eq!(placed.len(), (n as usize).min(nodes.len()));
        prop_assert_eq!(covered.len(), (n as usize).min(available.len()), "{:?}", placed);
        // An instance alone in its zone is never moved.
        for id in &on {
            let alone = on.iter().filter(|o| zone_of(o) == zone_of(id)).count() == 1;
            if alone {
                prop_assert!(placed.contains(id), "{} moved: {:?} -> {:?}", id, on, placed);
            }
        }
        let again = schedule(&nodes, &specs, &r.assignment);
        prop_assert_eq!(again.assignment, r.assignment);
    }
}
