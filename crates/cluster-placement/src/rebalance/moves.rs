//! The greedy move search behind `plan_rebalance`.
//!
//! Each SpreadEvenly move takes an instance from a node with load `s` to one with load
//! `t ≤ s − 2`, so Σ load² strictly decreases; each BinPack move goes to `t ≥ s`, so Σ load²
//! strictly increases; each ZoneAware diversity move strictly increases the number of
//! (app, zone) pairs and spread moves never decrease it. Every strategy therefore terminates,
//! and the state where it stops admits no further move, which is what makes re-planning after
//! applying a plan return nothing.

use std::collections::BTreeMap;

use cluster_core::{AppName, Mode, NodeId};

use super::{Plan, RebalancePolicy, RebalanceState, RebalanceStrategy, imbalance_of};
use crate::Assignment;
use crate::migration::{Migration, MigrationKind};
use crate::model::{AppSpec, Constraint, NodeInfo};
use crate::schedule::{Cluster, Ledger, constraint_holds};

struct Work<'a> {
    cluster: Cluster<'a>,
    specs: BTreeMap<&'a AppName, &'a AppSpec>,
    policy: &'a RebalancePolicy,
    assignment: Assignment,
    ledger: Ledger,
    /// Active load per schedulable node index (absent = not schedulable).
    load: BTreeMap<usize, u32>,
}

#[derive(Clone)]
struct Move {
    app: AppName,
    src: usize,
    tgt: usize,
    leader: bool,
}

pub(super) fn plan(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    policy: &RebalancePolicy,
) -> Plan {
    let mut w = Work::new(nodes, apps, current, policy);
    let before = w.imbalance();
    let stop = policy.stop_threshold.unwrap_or(policy.threshold / 2.0);
    let limit = if policy.max_concurrent == 0 {
        usize::MAX
    } else {
        policy.max_concurrent
    };
    let mut migrations = Vec::new();
    let mut rejected = Vec::new();
    match &policy.strategy {
        RebalanceStrategy::Custom(f) => {
            let state = RebalanceState {
                nodes,
                apps,
                assignment: current,
            };
            for m in f(&state) {
                if migrations.len() >= limit {
                    break;
                }
                match w.validate_proposal(&m) {
                    Ok(mv) => {
                        migrations.push(w.apply(&mv));
                    }
                    Err(why) => rejected.push((m, why)),
                }
            }
        }
        strategy => {
            let zone_key = match strategy {
                RebalanceStrategy::ZoneAware { key } => Some(key.as_str()),
                _ => None,
            };
            let start = match strategy {
                RebalanceStrategy::BinPack => true,
                _ => {
                    before > policy.threshold
                        || zone_key.is_some_and(|k| w.diversity_move(k).is_some())
                }
            };
            while start && migrations.len() < limit {
                let next = match strategy {
                    RebalanceStrategy::BinPack => w.binpack_move(),
                    _ => zone_key.and_then(|k| w.diversity_move(k)).or_else(|| {
                        (w.imbalance() > stop)
                            .then(|| w.spread_move(zone_key))
                            .flatten()
                    }),
                };
                let Some(mv) = next else { break };
                migrations.push(w.apply(&mv));
            }
        }
    }
    let after = w.imbalance();
    let mut assignment = w.assignment;
    assignment.version = if assignment.same_placement(current) {
        current.version
    } else {
        current.version + 1
    };
    Plan {
        migrations,
        imbalance_before: before,
        imbalance_after: after,
        assignment,
        rejected,
    }
}

impl<'a> Work<'a> {
    fn new(
        nodes: &'a [NodeInfo],
        apps: &'a [AppSpec],
        current: &Assignment,
        policy: &'a RebalancePolicy,
    ) -> Self {
        let cluster = Cluster::new(nodes);
        let mut specs = BTreeMap::new();
        for a in apps {
            specs.entry(&a.name).or_insert(a);
        }
        let mut ledger = Ledger::new(cluster.len());
        let mut load: BTreeMap<usize, u32> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.schedulable())
            .map(|(i, _)| (i, 0))
            .collect();
        for (app, p) in &current.apps {
            let Some(spec) = specs.get(app) else { continue };
            for (pos, node) in p.nodes.iter().enumerate() {
                let Some(i) = cluster.index(node) else {
                    continue;
                };
                ledger.add(i, spec.resources);
                let active = spec.mode != Mode::Singleton || pos == 0;
                if active && let Some(l) = load.get_mut(&i) {
                    *l += 1;
                }
            }
        }
        Self {
            cluster,
            specs,
            policy,
            assignment: current.clone(),
            ledger,
            load,
        }
    }

    fn imbalance(&self) -> f64 {
        let by_id: BTreeMap<NodeId, u32> = self
            .load
            .iter()
            .map(|(&i, &l)| (self.cluster.nodes[i].id.clone(), l))
            .collect();
        imbalance_of(&by_id)
    }

    fn id(&self, i: usize) -> &NodeId {
        &self.cluster.nodes[i].id
    }

    /// Movable apps running actively on `src`, by name.
    fn movable_on(&self, src: usize) -> Vec<(AppName, bool)> {
        let id = self.id(src);
        self.assignment
            .apps
            .iter()
            .filter_map(|(app, p)| {
                let spec = self.specs.get(app)?;
                if !self.policy.may_move(spec) {
                    return None;
                }
                match spec.mode {
                    Mode::Replicas { .. } if p.contains(id) => Some((app.clone(), false)),
                    Mode::Singleton if p.leader() == Some(id) && p.nodes.len() > 1 => {
                        Some((app.clone(), true))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether moving `app` (an instance, or the leader) from `src` to `tgt` keeps every hard
    /// constraint and capacity.
    fn valid(&self, app: &AppName, src: usize, tgt: usize, leader: bool) -> Result<(), String> {
        if src == tgt || !self.load.contains_key(&tgt) {
            return Err("target is not schedulable".into());
        }
        let spec = self.specs.get(app).ok_or("app not registered")?;
        let p = self.assignment.app(app).ok_or("app not placed")?;
        let (src_id, tgt_id) = (self.id(src), self.id(tgt));
        if leader {
            return if p.leader() == Some(src_id) && p.nodes[1..].contains(tgt_id) {
                Ok(())
            } else {
                Err("leader moves go from the leader to an existing candidate".into())
            };
        }
        if !p.contains(src_id) || p.contains(tgt_id) {
            return Err("source must run the app and target must not".into());
        }
        let node = self.cluster.nodes[tgt];
        let hosts = |other: &AppName| self.assignment.app(other).map(|q| q.contains(tgt_id));
        if let Some(c) = spec
            .constraints
            .iter()
            .find(|c| !constraint_holds(c, node, hosts))
        {
            return Err(format!("{c} does not hold on {tgt_id}"));
        }
        if let Some(s) = spec
            .resources
            .shortfall(&self.ledger.free(tgt, &node.capacity))
        {
            return Err(format!("{tgt_id}: {s}"));
        }
        for (other, q) in &self.assignment.apps {
            let Some(os) = self.specs.get(other) else {
                continue;
            };
            for c in &os.constraints {
                match c {
                    Constraint::WithApp { app: a } if a == app && q.contains(src_id) => {
                        return Err(format!("{other} needs {c} on {src_id}"));
                    }
                    Constraint::AwayFromApp { app: a } if a == app && q.contains(tgt_id) => {
                        return Err(format!("{other} has {c} and runs on {tgt_id}"));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn by_load(&self, descending: bool) -> Vec<usize> {
        let mut v: Vec<usize> = self.load.keys().copied().collect();
        v.sort_by(|&a, &b| {
            let o = self.load[&a].cmp(&self.load[&b]);
            (if descending { o.reverse() } else { o }).then_with(|| self.id(a).cmp(self.id(b)))
        });
        v
    }

    fn zone(&self, i: usize, key: &str) -> String {
        self.cluster.nodes[i]
            .labels
            .get(key)
            .unwrap_or("")
            .to_string()
    }

    fn app_zones(&self, app: &AppName, key: &str) -> BTreeMap<String, u32> {
        let mut zones = BTreeMap::new();
        for n in self
            .assignment
            .app(app)
            .map(|p| p.nodes.as_slice())
            .unwrap_or_default()
        {
            if let Some(i) = self.cluster.index(n) {
                *zones.entry(self.zone(i, key)).or_insert(0) += 1;
            }
        }
        zones
    }

    fn spread_move(&self, zone_key: Option<&str>) -> Option<Move> {
        let targets = self.by_load(false);
        for src in self.by_load(true) {
            for (app, leader) in self.movable_on(src) {
                let zones = zone_key.map(|k| (k, self.app_zones(&app, k)));
                for &tgt in &targets {
                    if self.load[&src] < self.load[&tgt] + 2 {
                        break;
                    }
                    if let Some((k, z)) = &zones
                        && !leader
                    {
                        let loses = z.get(&self.zone(src, k)).copied().unwrap_or(0) == 1;
                        let gains = !z.contains_key(&self.zone(tgt, k));
                        if loses && !gains {
                            continue;
                        }
                    }
                    if self.valid(&app, src, tgt, leader).is_ok() {
                        return Some(Move {
                            app,
                            src,
                            tgt,
                            leader,
                        });
                    }
                }
            }
        }
        None
    }

    fn binpack_move(&self) -> Option<Move> {
        let targets = self.by_load(true);
        for src in self.by_load(false) {
            if self.load[&src] == 0 {
                continue;
            }
            for (app, leader) in self.movable_on(src) {
                for &tgt in &targets {
                    if self.load[&tgt] < self.load[&src] {
                        break;
                    }
                    if self.valid(&app, src, tgt, leader).is_ok() {
                        return Some(Move {
                            app,
                            src,
                            tgt,
                            leader,
                        });
                    }
                }
            }
        }
        None
    }

    fn diversity_move(&self, key: &str) -> Option<Move> {
        let targets = self.by_load(false);
        for app in self.assignment.apps.keys() {
            let Some(spec) = self.specs.get(app) else {
                continue;
            };
            if !matches!(spec.mode, Mode::Replicas { .. }) || !self.policy.may_move(spec) {
                continue;
            }
            let zones = self.app_zones(app, key);
            let mut sources: Vec<usize> = self.assignment.apps[app]
                .nodes
                .iter()
                .filter_map(|n| self.cluster.index(n))
                .filter(|&i| self.load.contains_key(&i) && zones[&self.zone(i, key)] >= 2)
                .collect();
            sources.sort_by(|&a, &b| {
                self.load[&b]
                    .cmp(&self.load[&a])
                    .then_with(|| self.id(a).cmp(self.id(b)))
            });
            for &src in &sources {
                for &tgt in &targets {
                    if zones.contains_key(&self.zone(tgt, key)) {
                        continue;
                    }
                    if self.valid(app, src, tgt, false).is_ok() {
                        return Some(Move {
                            app: app.clone(),
                            src,
                            tgt,
                            leader: false,
                        });
                    }
                }
            }
        }
        None
    }

    fn validate_proposal(&self, m: &Migration) -> Result<Move, String> {
        let spec = self.specs.get(&m.app).ok_or("app not registered")?;
        if !self.policy.may_move(spec) {
            return Err("the policy excludes this app".into());
        }
        let (Some(from), Some(to)) = (&m.from, &m.to) else {
            return Err("a rebalance move needs both from and to".into());
        };
        let src = self.cluster.index(from).ok_or("unknown source node")?;
        let tgt = self.cluster.index(to).ok_or("unknown target node")?;
        let leader = match (&m.kind, spec.mode) {
            (MigrationKind::Leader, Mode::Singleton) => true,
            (MigrationKind::Move, Mode::Replicas { .. }) => false,
            _ => return Err("only Move (Replicas) and Leader (Singleton) can be planned".into()),
        };
        self.valid(&m.app, src, tgt, leader)?;
        Ok(Move {
            app: m.app.clone(),
            src,
            tgt,
            leader,
        })
    }

    fn apply(&mut self, mv: &Move) -> Migration {
        let (src_id, tgt_id) = (self.id(mv.src).clone(), self.id(mv.tgt).clone());
        let spec = self.specs[&mv.app];
        if let Some(p) = self.assignment.apps.get_mut(&mv.app) {
            if mv.leader {
                if let Some(pos) = p.nodes.iter().position(|n| *n == tgt_id) {
                    p.nodes.swap(0, pos);
                }
            } else {
                for n in p.nodes.iter_mut() {
                    if *n == src_id {
                        *n = tgt_id.clone();
                    }
                }
                self.ledger.remove(mv.src, spec.resources);
                self.ledger.add(mv.tgt, spec.resources);
            }
        }
        if let Some(l) = self.load.get_mut(&mv.src) {
            *l -= 1;
        }
        if let Some(l) = self.load.get_mut(&mv.tgt) {
            *l += 1;
        }
        Migration {
            app: mv.app.clone(),
            from: Some(src_id),
            to: Some(tgt_id),
            kind: if mv.leader {
                MigrationKind::Leader
            } else {
                MigrationKind::Move
            },
        }
    }
}
