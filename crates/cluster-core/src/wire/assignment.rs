//! The assignment: which nodes run which app, and who owns which Ring partition. The one model
//! of it, shared by the scheduler (`cluster-placement`), the `Planner` trait, the controller
//! and the node agents.
//!
//! The JSON form is stored in KV (see `docs/protocol/placement.md`); it carries a `format`
//! number so readers can refuse a layout they do not understand.

use std::collections::{BTreeMap, BTreeSet};

use crate::id::{AppName, NodeId};
use serde::{Deserialize, Serialize};

/// The JSON layout version written by this crate.
pub const ASSIGNMENT_FORMAT: u32 = 1;

/// Where one app runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlacement {
    /// Nodes that run an instance. Singleton: the candidates, preferred leader first.
    /// Spread and Ring: sorted by node id. Replicas: kept placements first, then new ones.
    pub nodes: Vec<NodeId>,
    /// Ring apps only: the owner of each partition (index = partition number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<NodeId>>,
}

impl AppPlacement {
    /// The preferred leader of a Singleton (the first node).
    pub fn leader(&self) -> Option<&NodeId> {
        self.nodes.first()
    }

    /// Whether `node` runs an instance.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.contains(node)
    }
}

/// A versioned placement of every app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Layout version of the JSON form ([`ASSIGNMENT_FORMAT`]).
    #[serde(default = "default_format")]
    pub format: u32,
    /// Incremented by the scheduler on every change (0 = nothing ever assigned).
    pub version: u64,
    /// Placement per app. Pending apps are absent.
    pub apps: BTreeMap<AppName, AppPlacement>,
}

impl Default for Assignment {
    fn default() -> Self {
        Self {
            format: ASSIGNMENT_FORMAT,
            version: 0,
            apps: BTreeMap::new(),
        }
    }
}

fn default_format() -> u32 {
    ASSIGNMENT_FORMAT
}

/// Why a stored assignment was refused.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// The JSON could not be parsed (including invalid node or app names).
    #[error("assignment JSON is malformed: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a newer layout this reader does not know.
    #[error(
        "assignment format {found} is not supported (this build reads format {ASSIGNMENT_FORMAT})"
    )]
    UnsupportedFormat {
        /// The format found.
        found: u32,
    },
    /// Internally inconsistent.
    #[error("assignment of app {app} is inconsistent: {problem}")]
    Inconsistent {
        /// The app.
        app: AppName,
        /// What is wrong.
        problem: String,
    },
}

impl Assignment {
    /// An empty assignment (version 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The placement of `app`.
    pub fn app(&self, app: &AppName) -> Option<&AppPlacement> {
        self.apps.get(app)
    }

    /// Apps with an instance on `node`, by name.
    pub fn apps_on(&self, node: &NodeId) -> Vec<&AppName> {
        self.apps
            .iter()
            .filter(|(_, p)| p.contains(node))
            .map(|(a, _)| a)
            .collect()
    }

    /// Whether `node` runs `app`.
    pub fn places(&self, app: &AppName, node: &NodeId) -> bool {
        self.apps.get(app).is_some_and(|p| p.contains(node))
    }

    /// Whether two assignments place everything identically (ignoring `version`).
    pub fn same_placement(&self, other: &Assignment) -> bool {
        self.apps == other.apps
    }

    /// Serialises to the stored JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, integers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates the stored JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AssignmentError> {
        let a: Assignment = serde_json::from_slice(bytes)?;
        if a.format != ASSIGNMENT_FORMAT {
            return Err(AssignmentError::UnsupportedFormat { found: a.format });
        }
        a.validate()?;
        Ok(a)
    }

    /// Checks internal consistency: no duplicate nodes, every partition owner runs an instance.
    pub fn validate(&self) -> Result<(), AssignmentError> {
        for (app, p) in &self.apps {
            let set: BTreeSet<&NodeId> = p.nodes.iter().collect();
            let bad = |problem: String| AssignmentError::Inconsistent {
                app: app.clone(),
                problem,
            };
            if set.len() != p.nodes.len() {
                return Err(bad("a node is listed twice".into()));
            }
            if let Some(parts) = &p.partitions
                && let Some((i, n)) = parts.iter().enumerate().find(|(_, n)| !set.contains(n))
            {
                return Err(bad(format!(
                    "partition {i} is owned by {n}, which does not run the app"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn json_round_trip_and_layout() {
        let mut a = Assignment::new();
        a.version = 7;
        a.apps.insert(
            AppName::new("kv").unwrap(),
            AppPlacement {
                nodes: vec![n("n1"), n("n2")],
                partitions: Some(vec![n("n1"), n("n2"), n("n1")]),
            },
        );
        a.apps.insert(
            AppName::new("db").unwrap(),
            AppPlacement {
                nodes: vec![n("n2"), n("n1")],
                partitions: None,
            },
        );
        let json = String::from_utf8(a.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"format":1,"version":7,"apps":{"db":{"nodes":["n2","n1"]},"kv":{"nodes":["n1","n2"],"partitions":["n1","n2","n1"]}}}"#
        );
        assert_eq!(Assignment::from_json(json.as_bytes()).unwrap(), a);
    }

    #[test]
    fn rejects_unknown_format_bad_names_and_inconsistency() {
        let e = Assignment::from_json(br#"{"format":2,"version":1,"apps":{}}"#).unwrap_err();
        assert!(matches!(e, AssignmentError::UnsupportedFormat { found: 2 }));
        assert!(
            Assignment::from_json(br#"{"format":1,"version":1,"apps":{"A":{"nodes":[]}}}"#)
                .is_err()
        );
        let e = Assignment::from_json(
            br#"{"format":1,"version":1,"apps":{"a":{"nodes":["n1"],"partitions":["n2"]}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("partition 0 is owned by n2"), "{e}");
        let e = Assignment::from_json(
            br#"{"format":1,"version":1,"apps":{"a":{"nodes":["n1","n1"]}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"));
    }
}
