//! Scheduling strategies: how eligible nodes are ranked.

use std::fmt;
use std::sync::Arc;

use crate::model::{AppSpec, NodeInfo};
use crate::resources::Resources;

/// The label key [`StrategyKind::ZoneAware`] uses by default.
pub const DEFAULT_ZONE_KEY: &str = "zone";

/// One eligible node, as a strategy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The node.
    pub node: &'a NodeInfo,
    /// Instances of all apps already placed (or still reserved) on it.
    pub instances: u32,
    /// Resources already used on it.
    pub used: Resources,
    /// Resources still free on it.
    pub free: Resources,
    /// The app's summed soft-preference weight for this node.
    pub preference: i64,
    /// Whether the app currently runs there.
    pub current: bool,
}

/// A user-supplied ranking of eligible nodes.
///
/// # To ensure correctness
/// - `rank` must be a pure function of its arguments: the platform may compute placement on
///   several nodes (to verify the controller) and expects identical answers.
/// - It returns indices into `candidates`, best first. Out-of-range and repeated indices are
///   ignored; candidates it leaves out are not used for this app. It can never make an
///   ineligible node eligible: hard constraints are applied before it is called.
pub trait Strategy: Send + Sync {
    /// A short name for logs and reasons.
    fn name(&self) -> &str {
        "custom"
    }
    /// Ranks `candidates` for `app`, best first.
    fn rank(&self, app: &AppSpec, candidates: &[Candidate<'_>]) -> Vec<usize>;
}

impl<F> Strategy for F
where
    F: Fn(&AppSpec, &[Candidate<'_>]) -> Vec<usize> + Send + Sync,
{
    fn rank(&self, app: &AppSpec, candidates: &[Candidate<'_>]) -> Vec<usize> {
        self(app, candidates)
    }
}

/// How the scheduler ranks eligible nodes for an app.
///
/// Soft preferences always rank first; the strategy orders nodes of equal preference; the node
/// id breaks remaining ties.
#[derive(Clone, Default)]
pub enum StrategyKind {
    /// Fewest instances first, then lowest resource utilisation (the default).
    #[default]
    SpreadEvenly,
    /// Highest resource utilisation first, then most instances (fills nodes up).
    BinPack,
    /// Fewest instances of this app in the node's zone first (label `key`), then as
    /// `SpreadEvenly`.
    ZoneAware {
        /// The label that names a node's zone.
        key: String,
    },
    /// A user-supplied ranking.
    Custom(Arc<dyn Strategy>),
}

impl StrategyKind {
    /// `ZoneAware` on the default `zone` label.
    pub fn zone_aware() -> Self {
        StrategyKind::ZoneAware {
            key: DEFAULT_ZONE_KEY.into(),
        }
    }

    /// Wraps a closure or strategy object.
    pub fn custom(s: impl Strategy + 'static) -> Self {
        StrategyKind::Custom(Arc::new(s))
    }
}

impl fmt::Debug for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategyKind::SpreadEvenly => f.write_str("SpreadEvenly"),
            StrategyKind::BinPack => f.write_str("BinPack"),
            StrategyKind::ZoneAware { key } => write!(f, "ZoneAware({key})"),
            StrategyKind::Custom(s) => write!(f, "Custom({})", s.name()),
        }
    }
}
