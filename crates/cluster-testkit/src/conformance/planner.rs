//! Conformance suite for [`Planner`] (see its contract): deterministic and stable plans,
//! nothing on unhealthy or draining nodes, nothing new on cordoned nodes, apps only where they
//! are registered, hard constraints (a label rule, node capacity) on every placed node, blocked
//! instances of a drain without force, and make-before-break.
//!
//! Rules are the core's placement document ([`PlacementSpec`]); node capacity comes from the
//! `cpu` label ([`Resources::from_labels`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cluster_core::planner::{PlanApp, PlanMove, PlanNode, PlanOutcome, PlanRequest, Planner};
use cluster_core::wire::assignment::{AppPlacement, Assignment};
use cluster_core::wire::resources::Resources;
use cluster_core::wire::rules::{Constraint, PlacementSpec};
use cluster_core::{AppName, Labels, Mode, NodeId};

use super::{announce, ok};

/// Gives the planner under test.
pub trait PlannerFactory: Send + Sync {
    /// The planner.
    fn planner(&self) -> Arc<dyn Planner>;
}

/// The rules document of `spec` (current version).
fn rules(spec: PlacementSpec) -> serde_json::Value {
    ok(
        "encode rules",
        PlacementSpec {
            v: PlacementSpec::current().v,
            ..spec
        }
        .to_json(),
    )
}

/// Rules: only on nodes whose label `key` equals `value`.
fn on_label(key: &str, value: &str) -> serde_json::Value {
    rules(PlacementSpec {
        constraints: vec![Constraint::OnLabel {
            key: key.into(),
            value: value.into(),
        }],
        ..PlacementSpec::default()
    })
}

/// Rules: one instance needs `millis` millicores of CPU.
fn needs_cpu(millis: u64) -> serde_json::Value {
    rules(PlacementSpec {
        resources: Resources::new(millis, 0, 0),
        ..PlacementSpec::default()
    })
}

/// Labels giving a node `millis` millicores of CPU.
fn cpu_capacity(millis: u64) -> Labels {
    Labels::from_pairs([("cpu", format!("{millis}m"))]).expect("valid labels")
}

/// Runs every scenario.
pub fn run_all(factory: &dyn PlannerFactory) {
    the_same_request_gives_the_same_outcome(factory);
    unhealthy_draining_and_cordoned_nodes_get_nothing_new(factory);
    apps_run_only_where_registered(factory);
    a_label_rule_holds_on_every_placed_node(factory);
    capacity_is_never_exceeded(factory);
    a_drain_without_force_blocks_what_cannot_move(factory);
    make_before_break_keeps_the_old_node_until_the_new_one_runs(factory);
}

fn node_id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node")
}

fn app_name(name: &str) -> AppName {
    AppName::new(name).expect("valid app")
}

/// A healthy node hosting `apps`, running nothing.
fn node(name: &str, apps: &[&str]) -> PlanNode {
    PlanNode {
        id: node_id(name),
        labels: Labels::new(),
        healthy: true,
        cordoned: false,
        draining: false,
        drain_force: false,
        drain_release: None,
        running: BTreeSet::new(),
        leading: BTreeSet::new(),
        hosts: apps.iter().map(|a| app_name(a)).collect(),
        load: None,
    }
}

fn app(name: &str, mode: Mode) -> PlanApp {
    PlanApp {
        name: app_name(name),
        mode,
        placement: None,
    }
}

fn request(nodes: Vec<PlanNode>, apps: Vec<PlanApp>) -> PlanRequest {
    PlanRequest {
        nodes,
        apps,
        current: Assignment::default(),
        moves: Vec::new(),
    }
}

fn plan(factory: &dyn PlannerFactory, request: &PlanRequest) -> PlanOutcome {
    ok("plan", factory.planner().plan(request))
}

/// The nodes `app` is placed on.
fn placed(outcome: &PlanOutcome, app: &str) -> Vec<NodeId> {
    outcome
        .assignment
        .apps
        .get(&app_name(app))
        .map(|p| p.nodes.clone())
        .unwrap_or_default()
}

/// The request of the next round: `outcome` is published and every placed node runs (and a
/// Singleton's first node leads) what it was given.
fn settled(mut request: PlanRequest, outcome: &PlanOutcome) -> PlanRequest {
    for n in &mut request.nodes {
        n.running.clear();
        n.leading.clear();
        for (app, p) in &outcome.assignment.apps {
            if p.nodes.contains(&n.id) {
                n.running.insert(app.clone());
            }
            let singleton = request
                .apps
                .iter()
                .any(|a| a.name == *app && a.mode == Mode::Singleton);
            if singleton && p.nodes.first() == Some(&n.id) {
                n.leading.insert(app.clone());
            }
        }
    }
    request.current = outcome.assignment.clone();
    request
}

fn mixed_request() -> PlanRequest {
    let apps = ["web", "db", "jobs"];
    request(
        ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| node(n, &apps))
            .collect(),
        vec![
            app("web", Mode::Spread),
            app("db", Mode::Singleton),
            app("jobs", Mode::Replicas { n: 2 }),
        ],
    )
}

/// Planning one request twice gives equal outcomes; planning again once the outcome is
/// published and running changes nothing (same placement, same version).
pub fn the_same_request_gives_the_same_outcome(factory: &dyn PlannerFactory) {
    announce("planner", "the_same_request_gives_the_same_outcome");
    let req = mixed_request();
    let first = plan(factory, &req);
    let second = plan(factory, &req);
    assert_eq!(first, second, "one request, two outcomes");
    assert_eq!(placed(&first, "web").len(), 4, "Spread runs on every node");
    assert_eq!(
        placed(&first, "jobs").len(),
        2,
        "Replicas(2) runs on 2 nodes"
    );
    assert!(!placed(&first, "db").is_empty(), "the Singleton is placed");
    assert!(
        first.assignment.version > req.current.version,
        "a changed placement bumps the version"
    );
    let next = settled(req, &first);
    let again = plan(factory, &next);
    assert_eq!(
        again.assignment, first.assignment,
        "a settled cluster is planned the same, version included"
    );
}

/// No app runs on an unhealthy node or on a node drained with force; a cordoned node keeps
/// what it runs and receives nothing new.
pub fn unhealthy_draining_and_cordoned_nodes_get_nothing_new(factory: &dyn PlannerFactory) {
    announce(
        "planner",
        "unhealthy_draining_and_cordoned_nodes_get_nothing_new",
    );
    let apps = ["web", "jobs", "kept"];
    let mut nodes: Vec<PlanNode> = ["sick", "cordoned", "drained", "ok1", "ok2"]
        .iter()
        .map(|n| node(n, &apps))
        .collect();
    nodes[0].healthy = false;
    nodes[1].cordoned = true;
    nodes[1].running.insert(app_name("kept"));
    nodes[2].draining = true;
    nodes[2].drain_force = true;
    nodes[2].running.insert(app_name("jobs"));
    let mut req = request(
        nodes,
        vec![
            app("web", Mode::Spread),
            app("jobs", Mode::Replicas { n: 2 }),
            app("kept", Mode::Replicas { n: 1 }),
        ],
    );
    req.current.version = 4;
    req.current.apps.insert(
        app_name("kept"),
        AppPlacement {
            nodes: vec![node_id("cordoned")],
            partitions: None,
        },
    );
    req.current.apps.insert(
        app_name("jobs"),
        AppPlacement {
            nodes: vec![node_id("drained"), node_id("ok1")],
            partitions: None,
        },
    );
    let out = plan(factory, &req);
    for (app, p) in &out.assignment.apps {
        for bad in ["sick", "drained"] {
            assert!(
                !p.nodes.contains(&node_id(bad)),
                "{app} placed on the {bad} node: {:?}",
                p.nodes
            );
        }
    }
    assert!(
        !placed(&out, "web").contains(&node_id("cordoned")),
        "a cordoned node received a new instance"
    );
    assert!(
        !placed(&out, "jobs").contains(&node_id("cordoned")),
        "a cordoned node received a new instance"
    );
    assert_eq!(
        placed(&out, "kept"),
        vec![node_id("cordoned")],
        "a cordoned node keeps what it runs"
    );
    let mut web = placed(&out, "web");
    web.sort();
    assert_eq!(web, vec![node_id("ok1"), node_id("ok2")]);
}

/// An app is placed only on nodes that registered it.
pub fn apps_run_only_where_registered(factory: &dyn PlannerFactory) {
    announce("planner", "apps_run_only_where_registered");
    let req = request(
        vec![
            node("n1", &["web", "db"]),
            node("n2", &["web"]),
            node("n3", &[]),
        ],
        vec![app("web", Mode::Spread), app("db", Mode::Replicas { n: 2 })],
    );
    let out = plan(factory, &req);
    let mut web = placed(&out, "web");
    web.sort();
    assert_eq!(web, vec![node_id("n1"), node_id("n2")]);
    assert_eq!(
        placed(&out, "db"),
        vec![node_id("n1")],
        "db is registered on n1 only"
    );
}

/// An app with a label rule is placed only on nodes carrying the label; with no such node it
/// is pending, never placed elsewhere.
pub fn a_label_rule_holds_on_every_placed_node(factory: &dyn PlannerFactory) {
    announce("planner", "a_label_rule_holds_on_every_placed_node");
    let apps = ["edge", "gpu"];
    let mut nodes: Vec<PlanNode> = ["n1", "n2", "n3"].iter().map(|n| node(n, &apps)).collect();
    for (n, zone) in nodes.iter_mut().zip(["a", "b", "a"]) {
        n.labels = Labels::from_pairs([("zone", zone)]).expect("valid labels");
    }
    let mut edge = app("edge", Mode::Spread);
    edge.placement = Some(on_label("zone", "a"));
    let mut gpu = app("gpu", Mode::Replicas { n: 1 });
    gpu.placement = Some(on_label("zone", "c"));
    let out = plan(factory, &request(nodes, vec![edge, gpu]));
    let mut placed_edge = placed(&out, "edge");
    placed_edge.sort();
    assert_eq!(placed_edge, vec![node_id("n1"), node_id("n3")]);
    assert!(
        placed(&out, "gpu").is_empty(),
        "no node has zone=c: gpu must not be placed"
    );
    assert!(
        out.pending.contains_key(&app_name("gpu")),
        "an app that fits nowhere is pending with a reason: {:?}",
        out.pending
    );
}

/// Instances needing 600 millicores each never share a node of 1000 millicores: of three
/// such apps on two nodes, one is pending.
pub fn capacity_is_never_exceeded(factory: &dyn PlannerFactory) {
    announce("planner", "capacity_is_never_exceeded");
    let apps = ["a1", "a2", "a3"];
    let mut nodes: Vec<PlanNode> = ["n1", "n2"].iter().map(|n| node(n, &apps)).collect();
    for n in &mut nodes {
        n.labels = cpu_capacity(1000);
    }
    let big: Vec<PlanApp> = apps
        .iter()
        .map(|a| {
            let mut spec = app(a, Mode::Replicas { n: 1 });
            spec.placement = Some(needs_cpu(600));
            spec
        })
        .collect();
    let out = plan(factory, &request(nodes, big));
    let mut per_node: BTreeMap<NodeId, Vec<AppName>> = BTreeMap::new();
    for (app, p) in &out.assignment.apps {
        for n in &p.nodes {
            per_node.entry(n.clone()).or_default().push(app.clone());
        }
    }
    for (n, apps) in &per_node {
        assert!(
            apps.len() <= 1,
            "{n} got {apps:?}: 2 × 600 millicores exceed its 1000"
        );
    }
    assert_eq!(
        per_node.values().map(Vec::len).sum::<usize>(),
        2,
        "two of the three apps fit"
    );
    assert_eq!(
        out.pending.len(),
        1,
        "the third is pending: {:?}",
        out.pending
    );
}

/// A node drained without force keeps an instance that has no eligible node elsewhere and
/// lists it in `blocked`; an instance that can move leaves it.
pub fn a_drain_without_force_blocks_what_cannot_move(factory: &dyn PlannerFactory) {
    announce("planner", "a_drain_without_force_blocks_what_cannot_move");
    let mut drained = node("n1", &["pinned", "mobile"]);
    drained.draining = true;
    drained.running = [app_name("pinned"), app_name("mobile")].into();
    let mut req = request(
        vec![drained, node("n2", &["mobile"])],
        vec![
            app("pinned", Mode::Replicas { n: 1 }),
            app("mobile", Mode::Replicas { n: 1 }),
        ],
    );
    req.current.version = 2;
    for a in ["pinned", "mobile"] {
        req.current.apps.insert(
            app_name(a),
            AppPlacement {
                nodes: vec![node_id("n1")],
                partitions: None,
            },
        );
    }
    let out = plan(factory, &req);
    assert_eq!(
        placed(&out, "pinned"),
        vec![node_id("n1")],
        "nowhere else to go: it stays"
    );
    assert!(
        out.blocked.contains_key(&app_name("pinned")),
        "the instance that stays is reported blocked: {:?}",
        out.blocked
    );
    assert!(
        placed(&out, "mobile").contains(&node_id("n2")),
        "the movable instance goes to n2"
    );
    assert!(
        !out.blocked.contains_key(&app_name("mobile")),
        "a movable instance is not blocked"
    );
}

/// An operator's move of a Replicas instance between two live nodes keeps the old node in
/// the assignment until the new one reports the instance running, then drops it.
pub fn make_before_break_keeps_the_old_node_until_the_new_one_runs(factory: &dyn PlannerFactory) {
    announce(
        "planner",
        "make_before_break_keeps_the_old_node_until_the_new_one_runs",
    );
    let mut n1 = node("n1", &["svc"]);
    n1.running.insert(app_name("svc"));
    let mut req = request(
        vec![n1, node("n2", &["svc"])],
        vec![app("svc", Mode::Replicas { n: 1 })],
    );
    req.current.version = 1;
    req.current.apps.insert(
        app_name("svc"),
        AppPlacement {
            nodes: vec![node_id("n1")],
            partitions: None,
        },
    );
    req.moves.push(PlanMove {
        app: app_name("svc"),
        from: node_id("n1"),
        to: Some(node_id("n2")),
    });
    let during = plan(factory, &req);
    let nodes = placed(&during, "svc");
    assert!(
        nodes.contains(&node_id("n2")),
        "the target is placed: {nodes:?}"
    );
    assert!(
        nodes.contains(&node_id("n1")),
        "the old node stays until the new one runs: {nodes:?}"
    );
    // n2 now runs it: the old node is released.
    req.current = during.assignment.clone();
    req.nodes[1].running.insert(app_name("svc"));
    let after = plan(factory, &req);
    assert_eq!(
        placed(&after, "svc"),
        vec![node_id("n2")],
        "once the new node runs it, the old one is dropped"
    );
}
