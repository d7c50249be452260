//! `WatchLabels`: a cluster-wide stream of node label changes, derived from the membership
//! view (every member publishes its effective labels: configured labels with the operators'
//! overrides applied, see [`Platform::update_node_labels`]).

use std::collections::{BTreeMap, VecDeque};

use futures::Stream;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::membership::MemberMap;
use crate::platform::Platform;
use cluster_core::error::Result;
use cluster_core::id::NodeId;
use cluster_core::labels::Labels;

/// A subscription to label changes of every node ([`Platform::watch_labels`]).
///
/// Yields `(node, labels)` — the node's complete labels after the change — whenever a live
/// node's labels differ from what this watch saw last, and once for a node that joins after the
/// watch was created. Nodes that leave yield nothing. Intermediate states between two reads
/// may be coalesced (the latest labels are always delivered).
#[derive(Debug)]
pub struct LabelWatch {
    members: watch::Receiver<MemberMap>,
    seen: BTreeMap<NodeId, Labels>,
    queue: VecDeque<(NodeId, Labels)>,
}

impl LabelWatch {
    fn new(mut members: watch::Receiver<MemberMap>) -> Self {
        let seen = labels_of(&members.borrow_and_update());
        Self {
            members,
            seen,
            queue: VecDeque::new(),
        }
    }

    /// The labels of every live node now (the baseline changes are reported against).
    pub fn current(&self) -> &BTreeMap<NodeId, Labels> {
        &self.seen
    }

    /// The next change; `None` once the platform stopped.
    pub async fn next(&mut self) -> Option<(NodeId, Labels)> {
        loop {
            if let Some(change) = self.queue.pop_front() {
                return Some(change);
            }
            self.members.changed().await.ok()?;
            let now = labels_of(&self.members.borrow_and_update());
            for (node, labels) in &now {
                if self.seen.get(node) != Some(labels) {
                    self.queue.push_back((node.clone(), labels.clone()));
                }
            }
            self.seen = now;
        }
    }

    /// The watch as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = (NodeId, Labels)> + Send {
        futures::stream::unfold(self, |mut w| async move { w.next().await.map(|c| (c, w)) })
    }
}

fn labels_of(members: &MemberMap) -> BTreeMap<NodeId, Labels> {
    members
        .values()
        .map(|m| (m.node_id.clone(), m.labels.clone()))
        .collect()
}

impl Platform {
    /// The spec's `WatchLabels`: label changes of every node, cluster-wide (operators'
    /// `update_node_labels`/`remove_node_label`, a node's own `set_labels`/`remove_label`).
    /// Placement re-evaluates on the same changes independently of any watcher.
    pub async fn watch_labels(&self) -> Result<LabelWatch> {
        let started = self.shared().started().await?;
        Ok(LabelWatch::new(started.membership.clone()))
    }

    /// Calls `f(node, labels)` for every label change (see [`watch_labels`](Self::watch_labels))
    /// until the returned handle is aborted or the platform stops.
    pub async fn on_labels_changed<F>(&self, mut f: F) -> Result<AbortHandle>
    where
        F: FnMut(&NodeId, &Labels) + Send + 'static,
    {
        let mut watch = self.watch_labels().await?;
        let task = tokio::spawn(async move {
            while let Some((node, labels)) = watch.next().await {
                f(&node, &labels);
            }
        });
        Ok(task.abort_handle())
    }
}
