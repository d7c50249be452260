//! Property tests of the platform planner (the core `Planner` contract): determinism, the
//! version rule, nothing on unhealthy nodes, nothing new on cordoned nodes, draining nodes
//! keep only blocked or unreleased instances, make-before-break, and a converged cluster
//! stays put.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use cluster_core::planner::{PlanMove, PlanOutcome, PlanRequest, Planner};
use cluster_core::{AppName, Mode, NodeId};
use cluster_placement::PlacementPlanner;
use common::{a, n, plan_node, request};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct RawNode {
    healthy: bool,
    cordoned: bool,
    draining: bool,
    force: bool,
    release: Option<u8>,
    running: u8,
    hosts: u8,
}

fn raw_node() -> impl Strategy<Value = RawNode> {
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::option::weighted(0.4, any::<u8>()),
        any::<u8>(),
        prop::option::weighted(0.35, any::<u8>()),
    )
        .prop_map(
            |(healthy, cordoned, draining, force, release, running, hosts)| RawNode {
                healthy,
                cordoned,
                draining,
                force,
                release,
                running,
                hosts: hosts.unwrap_or(u8::MAX),
            },
        )
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Singleton),
        Just(Mode::Spread),
        (1..4u32).prop_map(|n| Mode::Replicas { n }),
    ]
}

/// The apps whose bit is set in `mask` (app i ↔ bit i).
fn subset(mask: u8, apps: &[AppName]) -> BTreeSet<AppName> {
    apps.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, x)| x.clone())
        .collect()
}

/// An operator's move of an app: from node `.0` to node `.1` (or the planner's choice).
type RawMove = Option<(usize, Option<usize>)>;

fn build(
    raw: &[RawNode],
    modes: &[Mode],
    placed: &[Vec<usize>],
    moves: &[RawMove],
    version: u64,
) -> PlanRequest {
    let names: Vec<String> = (0..modes.len()).map(|i| format!("app{i}")).collect();
    let apps: Vec<(&str, Mode)> = names
        .iter()
        .map(String::as_str)
        .zip(modes.iter().copied())
        .collect();
    let nodes = (0..raw.len())
        .map(|i| plan_node(&format!("n{i}")))
        .collect();
    let mut r = request(nodes, &apps);
    let app_names: Vec<AppName> = names.iter().map(|x| a(x)).collect();
    for (node, raw) in r.nodes.iter_mut().zip(raw) {
        node.healthy = raw.healthy;
        node.cordoned = raw.cordoned;
        node.draining = raw.draining;
        node.drain_force = raw.force;
        node.drain_release = raw.release.map(|m| subset(m, &app_names));
        node.running = subset(raw.running, &app_names);
        node.hosts = subset(raw.hosts, &app_names);
    }
    for (app, on) in app_names.iter().zip(placed) {
        let mut nodes: Vec<NodeId> = Vec::new();
        for i in on.iter().map(|i| i % raw.len()) {
            let id = n(&format!("n{i}"));
            if !nodes.contains(&id) {
                nodes.push(id);
            }
        }
        if !nodes.is_empty() {
            r.current.apps.insert(
                app.clone(),
                cluster_placement::AppPlacement {
                    nodes,
                    partitions: None,
                },
            );
        }
    }
    for (app, mv) in app_names.iter().zip(moves) {
        if let Some((from, to)) = mv {
            r.moves.push(PlanMove {
                app: app.clone(),
                from: n(&format!("n{}", from % raw.len())),
                to: to.map(|t| n(&format!("n{}", t % raw.len()))),
            });
        }
    }
    r.current.version = version;
    r
}

fn cluster() -> impl Strategy<Value = PlanRequest> {
    (
        prop::collection::vec(raw_node(), 2..6),
        prop::collection::vec(mode(), 1..5),
        prop::collection::vec(prop::collection::vec(0..8usize, 0..4), 5),
        prop::collection::vec(
            prop::option::weighted(0.3, (0..8usize, prop::option::of(0..8usize))),
            5,
        ),
        0..10u64,
    )
        .prop_map(|(raw, modes, placed, moves, version)| {
            build(&raw, &modes, &placed, &moves, version)
        })
}

fn placed_on<'a>(outcome: &'a PlanOutcome, node: &'a NodeId) -> impl Iterator<Item = &'a AppName> {
    outcome
        .assignment
        .apps
        .iter()
        .filter(move |(_, p)| p.nodes.contains(node))
        .map(|(app, _)| app)
}

fn show(r: &PlanRequest, out: &PlanOutcome) -> String {
    let nodes: Vec<String> = r
        .nodes
        .iter()
        .map(|x| {
            format!(
                "{} h{} c{} d{} f{} rel{:?} run{:?} host{:?} lead{:?}",
                x.id,
                x.healthy,
                x.cordoned,
                x.draining,
                x.drain_force,
                x.drain_release,
                x.running,
                x.hosts,
                x.leading
            )
        })
        .collect();
    let modes: Vec<String> = r
        .apps
        .iter()
        .map(|x| format!("{}={:?}", x.name, x.mode))
        .collect();
    format!(
        "\nnodes {nodes:#?}\nmodes {modes:?}\ncurrent {:?}\nout {:?}\npending {:?} blocked {:?}",
        r.current, out.assignment, out.pending, out.blocked
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plans_keep_the_planner_contract(r in cluster()) {
        let planner = PlacementPlanner::default();
        let out = planner.plan(&r).unwrap();
        prop_assert_eq!(&planner.plan(&r).unwrap(), &out, "not deterministic");

        let same = out.assignment.apps == r.current.apps;
        let expected = if same { r.current.version } else { r.current.version + 1 };
        prop_assert_eq!(out.assignment.version, expected);

        // A drain limited to some concurrent migrations restores the whole current placement
        // of an app it has not released yet.
        let held = |app: &AppName| {
            r.nodes.iter().any(|d| {
                d.draining
                    && r.current.places(app, &d.id)
                    && d.drain_release.as_ref().is_some_and(|rel| !rel.contains(app))
            })
        };
        // A moved app follows the operator's request (checked when the move is requested).
        let moved = |app: &AppName| r.moves.iter().any(|m| m.app == *app);
        for d in r.nodes.iter().filter(|d| d.draining) {
            let Some(release) = &d.drain_release else { continue };
            for (app, _) in r.current.apps.iter().filter(|(app, p)| {
                p.nodes.contains(&d.id) && !release.contains(app) && !moved(app)
            }) {
                prop_assert!(
                    out.assignment.places(app, &d.id),
                    "unreleased {app} left draining {}: {}", d.id, show(&r, &out)
                );
            }
        }
        for node in &r.nodes {
            for app in placed_on(&out, &node.id).filter(|app| !moved(app)) {
                let before = r.current.places(app, &node.id);
                let restored = before && held(app);
                if !node.healthy && !node.draining {
                    prop_assert!(restored, "{app} on unhealthy {}: {}", node.id, show(&r, &out));
                }
                if node.cordoned {
                    prop_assert!(before, "{app} newly on cordoned {}: {}", node.id, show(&r, &out));
                }
                if node.draining {
                    prop_assert!(
                        restored || out.blocked.contains_key(app),
                        "{app} on draining {}: {}", node.id, show(&r, &out)
                    );
                }
                // Make-before-break may keep an instance where it runs on a node that no
                // longer registers the app.
                let kept = before && (node.running.contains(app) || restored);
                prop_assert!(
                    node.hosts.contains(app) || kept,
                    "{app} on {} not hosting it: {}", node.id, show(&r, &out)
                );
            }
        }
    }

    #[test]
    fn replaced_replicas_keep_running_until_the_new_ones_run(r in cluster()) {
        let out = PlacementPlanner::default().plan(&r).unwrap();
        let runs = |node: &NodeId, app: &AppName| {
            r.nodes.iter().any(|x| x.id == *node && x.running.contains(app))
        };
        // A moved instance leaves its source through the move's own handover.
        let replicas = r.apps.iter().filter(|x| {
            matches!(x.mode, Mode::Replicas { .. }) && !r.moves.iter().any(|m| m.app == x.name)
        });
        for app in replicas {
            let (Some(before), Some(after)) =
                (r.current.apps.get(&app.name), out.assignment.apps.get(&app.name))
            else {
                continue;
            };
            let waiting = after
                .nodes
                .iter()
                .any(|x| !before.nodes.contains(x) && !runs(x, &app.name));
            if !waiting {
                continue;
            }
            for old in &before.nodes {
                let usable = r.nodes.iter().any(|x| x.id == *old && x.healthy && !x.draining);
                if usable && runs(old, &app.name) {
                    prop_assert!(
                        after.nodes.contains(old),
                        "{} left {old} before its new node runs it", app.name
                    );
                }
            }
        }
    }

    /// Nodes that report running what they are assigned (and leading the Singletons they
    /// are the preferred leader of) reach a fixed point within a few rounds.
    #[test]
    fn a_cluster_that_follows_its_plans_settles(r in cluster()) {
        let planner = PlacementPlanner::default();
        let mut state = r.clone();
        let mut settled = false;
        for _ in 0..4 {
            let out = planner.plan(&state).unwrap();
            if out.assignment == state.current {
                settled = true;
                break;
            }
            state.current = out.assignment.clone();
            // Requested moves are done once planned.
            state.moves.clear();
            for node in &mut state.nodes {
                node.running = placed_on(&out, &node.id).cloned().collect();
                node.leading = out
                    .assignment
                    .apps
                    .iter()
                    .filter(|(app, p)| {
                        p.nodes.first() == Some(&node.id)
                            && r.apps.iter().any(|x| x.name == **app && x.mode == Mode::Singleton)
                    })
                    .map(|(app, _)| app.clone())
                    .collect();
            }
        }
        let last = planner.plan(&state).unwrap();
        prop_assert!(settled, "not settled: {}", show(&state, &last));
    }
}
