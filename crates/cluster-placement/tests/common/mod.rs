// Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use cluster_core::{AppName, Labels, Mode, NodeId};
use cluster_placement::{AppSpec, NodeInfo};

pub(crate) fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

pub(crate) fn a(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

pub(crate) fn node(id: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo::new(n(id), Labels::from_pairs(labels.iter().copied()).unwrap())
}

pub(crate) fn app(name: &str, mode: Mode) -> AppSpec {
    AppSpec::new(a(name), mode)
}

pub(crate) fn ids(v: &[NodeId]) -> Vec<&str> {
    v.iter().map(NodeId::as_str).collect()
}
