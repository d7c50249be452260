//! Waiting for leadership and following leader changes of a Singleton app (spec 03's
//! `Election.WaitForLeadership` and `Election.LeaderChan`).
//!
//! Both read state the leadership machine already publishes: the app's role watch (`Leader`
//! with its epoch only after `on_active` succeeded) and the leader observed by the leader
//! observer (deduplicated there, one value per change). Both end with the platform's shutdown.

use futures::stream::{BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::app::App;
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::mode::Role;

impl App {
    /// Waits until this node leads the app (its `on_active` completed) and returns the term's
    /// epoch; at once if it leads already.
    ///
    /// Cancel it by dropping the future (for a deadline, wrap it in `tokio::time::timeout`).
    /// Fails with `ShuttingDown` when the platform shuts down first, and with `InvalidArgument`
    /// for an app that is not a Singleton or not registered with a platform.
    pub async fn wait_for_leadership(&self) -> Result<Epoch> {
        let shutdown = self.leadership_shutdown()?;
        let mut role = self.role_watch();
        loop {
            if shutdown.is_cancelled() {
                return Err(Error::ShuttingDown);
            }
            let state = *role.borrow_and_update();
            if let (Role::Leader, Some(epoch)) = (state.role, state.epoch) {
                return Ok(epoch);
            }
            tokio::select! {
                // The sender lives in the app, so this never fails while `self` exists.
                _ = role.changed() => {}
                _ = shutdown.cancelled() => return Err(Error::ShuttingDown),
            }
        }
    }

    /// A stream of the app's leader as observed by this node: first the current one, then each
    /// change (`None` while no node leads). Consecutive items always differ; a slow reader
    /// skips intermediate values but always gets the latest. Any number of streams may be open
    /// at once. The stream ends when the platform shuts down.
    ///
    /// Fails with `InvalidArgument` for an app that is not a Singleton or not registered with
    /// a platform.
    pub fn leader_changes(&self) -> Result<BoxStream<'static, Option<NodeId>>> {
        let shutdown = self.leadership_shutdown()?;
        let rx = self.inner.observed_leader.subscribe();
        let stream = futures::stream::unfold(
            (rx, shutdown, None::<Option<NodeId>>),
            |(mut rx, shutdown, last)| async move {
                loop {
                    if shutdown.is_cancelled() {
                        return None;
                    }
                    let leader = rx.borrow_and_update().clone();
                    if last.as_ref() != Some(&leader) {
                        return Some((leader.clone(), (rx, shutdown, Some(leader))));
                    }
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return None },
                        _ = shutdown.cancelled() => return None,
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    /// The shutdown signal of the platform a Singleton app is registered with.
    fn leadership_shutdown(&self) -> Result<CancellationToken> {
        if !self.mode().is_singleton() {
            return Err(Error::InvalidArgument(format!(
                "app {} is not a Singleton app",
                self.name()
            )));
        }
        Ok(self.shared()?.shutdown.clone())
    }
}
