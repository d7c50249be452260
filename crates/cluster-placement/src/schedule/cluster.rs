//! The scheduler's working state: nodes by index and what is placed on them.

use std::collections::BTreeMap;

use cluster_core::{AppName, NodeId};

use crate::model::NodeInfo;
use crate::resources::Resources;

/// Nodes sorted by id (first occurrence of a duplicate id wins), addressed by index.
pub(crate) struct Cluster<'a> {
    pub(crate) nodes: Vec<&'a NodeInfo>,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(nodes: &'a [NodeInfo]) -> Self {
        let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted.dedup_by(|a, b| a.id == b.id);
        Self { nodes: sorted }
    }

    pub(crate) fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.id.cmp(id)).ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Resources and instance counts per node.
#[derive(Clone)]
pub(crate) struct Ledger {
    pub(crate) used: Vec<Resources>,
    pub(crate) instances: Vec<u32>,
}

impl Ledger {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            used: vec![Resources::ZERO; n],
            instances: vec![0; n],
        }
    }

    pub(crate) fn add(&mut self, i: usize, r: Resources) {
        self.used[i] = self.used[i].saturating_add(r);
        self.instances[i] += 1;
    }

    pub(crate) fn remove(&mut self, i: usize, r: Resources) {
        self.used[i] = self.used[i].saturating_sub(r);
        self.instances[i] = self.instances[i].saturating_sub(1);
    }

    pub(crate) fn free(&self, i: usize, capacity: &Resources) -> Resources {
        capacity.saturating_sub(self.used[i])
    }
}

/// For every placed app, which node indices run it.
pub(crate) type Placed = BTreeMap<AppName, Vec<bool>>;
