//! Lease-based election over a [`KvBucket`].
//!
//! One actor task per election owns all state, so transitions never race. The lease key holds a
//! [`LeaseRecord`] with a per-key TTL:
//!
//! * **acquire**: `create(key, ttl)`; the epoch is the revision of that write;
//! * **renew**: every `R`, `update(key, expected = our revision, ttl)`; the local deadline becomes
//!   `start of that renewal + T·(1−ε)`;
//! * **demote**: when the deadline passes without a successful renewal, or a renewal finds a
//!   newer revision, or the key is deleted under us;
//! * **release**: `delete(key, expected = our revision)`; watchers see the delete and campaign
//!   at once;
//! * **crash detection**: the store expires the key `T` after the last renewal and watchers see
//!   `Expired`; as a fallback (lost events, nats-server#3653) a candidate that has seen no change
//!   of the lease for `T·(1+ε)` takes over with `update(expected = the revision it saw)`;
//! * **handoff**: the leader rewrites its lease with `handoff_to = target` (CAS); only the target
//!   claims it, by CAS on that revision; if it does not, the lease expires after `T`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::record::{LEASE_RECORD_VERSION, LeaseRecord};
use super::{Election, ElectionState, ElectionTiming, LeaderInfo, Leadership};
use crate::clock::Clock;
use crate::epoch::Epoch;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::kv::{KvBucket, KvEntry, KvWatch, Revision, WatchOp};

/// Far enough in the future to stand for "no timer".
const NEVER: Duration = Duration::from_secs(86_400 * 365);

enum Command {
    SetCandidate(bool, oneshot::Sender<Result<()>>),
    Resign(oneshot::Sender<Result<()>>),
    Handoff(NodeId, oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<()>),
}

/// A lease-based [`Election`] over any [`KvBucket`] that supports per-key TTLs.
pub struct LeaseElection {
    state: watch::Receiver<ElectionState>,
    commands: mpsc::UnboundedSender<Command>,
    clock: Arc<dyn Clock>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LeaseElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElection")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl LeaseElection {
    /// Starts the election actor for `key` in `bucket` (not yet campaigning).
    ///
    /// `instance` identifies this process incarnation; it lets the node recognise its own
    /// leftover lease after a demotion.
    pub fn start(
        bucket: Arc<dyn KvBucket>,
        key: impl Into<String>,
        node: NodeId,
        instance: impl Into<String>,
        timing: ElectionTiming,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        timing.validate()?;
        let key = key.into();
        crate::kv::validate_key(&key)?;
        let (state_tx, state) = watch::channel(ElectionState::default());
        let (commands, rx) = mpsc::unbounded_channel();
        let actor = Actor {
            bucket,
            key,
            node,
            instance: instance.into(),
            timing,
            clock: clock.clone(),
            state_tx,
            candidate: false,
            cooldown_until: None,
            observed: None,
            observed_at: clock.now(),
            term: None,
            next_attempt: clock.now(),
            highest_epoch: Epoch::ZERO,
        };
        let task = tokio::spawn(actor.run(rx));
        Ok(Self {
            state,
            commands,
            clock,
            task,
        })
    }

    async fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

impl Drop for LeaseElection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Election for LeaseElection {
    fn status(&self) -> watch::Receiver<ElectionState> {
        self.state.clone()
    }

    async fn set_candidate(&self, candidate: bool) -> Result<()> {
        self.send(|tx| Command::SetCandidate(candidate, tx)).await
    }

    async fn resign(&self) -> Result<()> {
        self.send(Command::Resign).await
    }

    async fn handoff(&self, to: &NodeId) -> Result<()> {
        let to = to.clone();
        self.send(|tx| Command::Handoff(to, tx)).await
    }

    fn fencing_token(&self) -> Option<Epoch> {
        let state = self.state.borrow();
        state
            .leading
            .filter(|l| self.clock.now() < l.deadline)
            .map(|l| l.epoch)
    }

    async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The lease as last seen in the store.
#[derive(Debug, Clone)]
struct Observed {
    revision: Revision,
    record: LeaseRecord,
}

impl Observed {
    fn epoch(&self) -> Epoch {
        if self.record.epoch == 0 {
            Epoch(self.revision.0)
        } else {
            Epoch(self.record.epoch)
        }
    }
}

/// This node's current term.
#[derive(Debug, Clone, Copy)]
struct Term {
    epoch: Epoch,
    revision: Revision,
    deadline: Instant,
    next_renew: Instant,
}

struct Actor {
    bucket: Arc<dyn KvBucket>,
    key: String,
    node: NodeId,
    instance: String,
    timing: ElectionTiming,
    clock: Arc<dyn Clock>,
    state_tx: watch::Sender<ElectionState>,
    candidate: bool,
    cooldown_until: Option<Instant>,
    observed: Option<Observed>,
    /// When the observed lease last changed (local clock).
    observed_at: Instant,
    term: Option<Term>,
    /// Earliest instant of the next acquisition attempt (retry backoff).
    next_attempt: Instant,
    /// Highest epoch ever seen; a lower one indicates a recreated bucket and is refused.
    highest_epoch: Epoch,
}

enum Wake {
    Command(Option<Command>),
    Event(Option<crate::kv::WatchEvent>),
    Timer,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut watch = self.open_watch().await;
        loop {
            let timer = self.next_timer();
            let wake = tokio::select! {
                biased;
                cmd = commands.recv() => Wake::Command(cmd),
                ev = watch.next() => Wake::Event(ev),
                _ = sleep_until(timer) => Wake::Timer,
            };
            match wake {
                Wake::Command(None) => {
                    self.release().await;
                    return;
                }
                Wake::Command(Some(Command::Close(done))) => {
                    self.candidate = false;
                    self.release().await;
                    self.publish();
                    let _ = done.send(());
                    return;
                }
                Wake::Command(Some(cmd)) => self.command(cmd).await,
                Wake::Event(Some(ev)) => {
                    if ev.key == self.key {
                        self.on_event(ev);
                    }
                }
                Wake::Event(None) => {
                    warn!(key = %self.key, "lease watch ended; reopening");
                    watch = self.open_watch().await;
                }
                Wake::Timer => {}
            }
            self.step().await;
        }
    }

    /// Opens the watch, then reads the current lease (watch first so nothing is missed).
    async fn open_watch(&mut self) -> KvWatch {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.bucket.watch(&self.key).await {
                Ok(w) => {
                    self.refresh().await;
                    return w;
                }
                Err(e) => {
                    warn!(key = %self.key, error = %e, "cannot watch lease; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.timing.renew_interval);
                }
            }
        }
    }

    async fn refresh(&mut self) {
        match self.bucket.get(&self.key).await {
            Ok(entry) => self.set_observed(entry),
            Err(e) => debug!(key = %self.key, error = %e, "cannot read lease"),
        }
    }

    fn set_observed(&mut self, entry: Option<KvEntry>) {
        let new = entry.and_then(|e| match LeaseRecord::decode(&e.value) {
            Ok(record) => Some(Observed {
                revision: e.revision,
                record,
            }),
            Err(err) => {
                crate::metrics::malformed("lease");
                warn!(key = %self.key, error = %err, "ignoring malformed lease record");
                None
            }
        });
        let changed =
            self.observed.as_ref().map(|o| o.revision) != new.as_ref().map(|o| o.revision);
        if let Some(o) = &new {
            if self
                .observed
                .as_ref()
                .is_some_and(|old| old.revision > o.revision)
            {
                return; // stale read: keep the newer observation
            }
            self.highest_epoch = self.highest_epoch.max(o.epoch());
        }
        if changed {
            self.observed_at = self.clock.now();
        }
        self.observed = new;
        self.publish();
    }

    fn on_event(&mut self, ev: crate::kv::WatchEvent) {
        if self
            .observed
            .as_ref()
            .is_some_and(|o| o.revision >= ev.revision)
        {
            return;
        }
        match ev.op {
            WatchOp::Put => self.set_observed(Some(KvEntry {
                key: ev.key,
                value: ev.value,
                revision: ev.revision,
            })),
            WatchOp::Delete | WatchOp::Expired => {
                if let Some(term) = self.term
                    && ev.revision > term.revision
                {
                    warn!(key = %self.key, epoch = %term.epoch, op = ?ev.op,
                        "our lease disappeared from the store; demoting");
                    self.term = None;
                }
                self.observed = None;
                self.observed_at = self.clock.now();
                self.next_attempt = self.clock.now();
                self.publish();
            }
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::SetCandidate(candidate, reply) => {
                self.candidate = candidate;
                if !candidate {
                    self.release().await;
                }
                self.publish();
                let _ = reply.send(Ok(()));
            }
            Command::Resign(reply) => {
                if self.term.is_some() {
                    self.release().await;
                    self.cooldown_until = Some(self.clock.now() + self.timing.cooldown);
                    info!(key = %self.key, cooldown = ?self.timing.cooldown, "resigned leadership");
                }
                self.publish();
                let _ = reply.send(Ok(()));
            }
            Command::Handoff(to, reply) => {
                let result = self.handoff(to).await;
                self.publish();
                let _ = reply.send(result);
            }
            Command::Close(_) => {}
        }
    }

    async fn handoff(&mut self, to: NodeId) -> Result<()> {
        let Some(term) = self.term else {
            return Err(self.not_leader());
        };
        if to == self.node {
            return Ok(());
        }
        // Stop acting first, then write the handoff record.
        self.term = None;
        self.publish();
        let record = LeaseRecord {
            v: LEASE_RECORD_VERSION,
            node: self.node.clone(),
            instance: self.instance.clone(),
            epoch: term.epoch.0,
            handoff_to: Some(to.clone()),
        };
        let value = record.encode()?;
        let rev = self
            .bucket
            .update(&self.key, value, term.revision, Some(self.timing.lease_ttl))
            .await?;
        self.observed = Some(Observed {
            revision: rev,
            record,
        });
        self.observed_at = self.clock.now();
        self.cooldown_until = Some(self.clock.now() + self.timing.cooldown);
        info!(key = %self.key, to = %to, "handing leadership over");
        Ok(())
    }

    fn not_leader(&self) -> Error {
        let leader = self.leader_info();
        Error::NotLeader {
            epoch: leader.as_ref().map(|l| l.epoch),
            leader: leader.map(|l| l.node),
        }
    }

    /// Releases the lease if held (compare-and-delete on our revision).
    async fn release(&mut self) {
        let Some(term) = self.term.take() else {
            return;
        };
        self.publish();
        match self.bucket.delete(&self.key, Some(term.revision)).await {
            Ok(()) => {
                self.observed = None;
                self.observed_at = self.clock.now();
            }
            Err(e) => warn!(key = %self.key, error = %e, "could not release lease; it will expire"),
        }
    }

    fn next_timer(&self) -> Instant {
        let now = self.clock.now();
        let mut t = now + NEVER;
        if let Some(term) = &self.term {
            t = t.min(term.next_renew).min(term.deadline);
        } else if self.candidate {
            let not_before = self.cooldown_until.unwrap_or(now).max(self.next_attempt);
            match &self.observed {
                None => t = t.min(not_before),
                Some(o) if o.record.handoff_to.as_ref() == Some(&self.node) => {
                    t = t.min(not_before)
                }
                Some(_) => {
                    t = t.min((self.observed_at + self.timing.takeover_after()).max(not_before))
                }
            }
        }
        t
    }

    /// Does whatever is due now.
    async fn step(&mut self) {
        let now = self.clock.now();
        if let Some(term) = self.term {
            if now >= term.deadline {
                warn!(key = %self.key, epoch = %term.epoch, "lease not renewed in time; demoting");
                self.term = None;
                self.publish();
            } else if now >= term.next_renew {
                self.renew(term).await;
            }
            return;
        }
        if !self.candidate
            || self.cooldown_until.is_some_and(|c| now < c)
            || now < self.next_attempt
        {
            return;
        }
        match self.observed.clone() {
            None => self.acquire().await,
            Some(o) if o.record.handoff_to.as_ref() == Some(&self.node) => {
                info!(key = %self.key, "claiming handed-over leadership");
                self.claim(o.revision).await
            }
            Some(o) if o.record.instance == self.instance && o.record.handoff_to.is_none() => {
                // Our own leftover lease from an ended term: release it, then campaign.
                if self
                    .bucket
                    .delete(&self.key, Some(o.revision))
                    .await
                    .is_ok()
                {
                    self.observed = None;
                    self.publish();
                    self.acquire().await;
                }
            }
            Some(o) if now >= self.observed_at + self.timing.takeover_after() => {
                info!(key = %self.key, holder = %o.record.node, revision = %o.revision,
                    "lease unchanged for T(1+ε) without an expiry event; taking over");
                self.claim(o.revision).await
            }
            Some(_) => {}
        }
    }

    fn my_record(&self, epoch: u64) -> Result<bytes::Bytes> {
        LeaseRecord {
            v: LEASE_RECORD_VERSION,
            node: self.node.clone(),
            instance: self.instance.clone(),
            epoch,
            handoff_to: None,
        }
        .encode()
    }

    async fn acquire(&mut self) {
        let Ok(value) = self.my_record(0) else { return };
        let started = self.clock.now();
        let result = self
            .bucket
            .create(&self.key, value, Some(self.timing.lease_ttl))
            .await;
        self.after_write(started, result).await;
    }

    async fn claim(&mut self, expected: Revision) {
        let Ok(value) = self.my_record(0) else { return };
        let started = self.clock.now();
        let result = self
            .bucket
            .update(&self.key, value, expected, Some(self.timing.lease_ttl))
            .await;
        self.after_write(started, result).await;
    }

    async fn after_write(&mut self, started: Instant, result: Result<Revision>) {
        match result {
            Ok(rev) => {
                let epoch = Epoch(rev.0);
                if epoch <= self.highest_epoch {
                    warn!(key = %self.key, %epoch, highest = %self.highest_epoch,
                        "store returned an epoch not above one already seen (bucket recreated?); refusing");
                    let _ = self.bucket.delete(&self.key, Some(rev)).await;
                    self.next_attempt = self.clock.now() + self.timing.renew_interval;
                    return;
                }
                self.highest_epoch = epoch;
                let record = match self.my_record(0).and_then(|v| LeaseRecord::decode(&v)) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                self.observed = Some(Observed {
                    revision: rev,
                    record,
                });
                self.observed_at = self.clock.now();
                self.term = Some(Term {
                    epoch,
                    revision: rev,
                    deadline: started + self.timing.act_window(),
                    next_renew: started + self.timing.renew_interval,
                });
                info!(key = %self.key, %epoch, "acquired leadership");
                self.publish();
            }
            Err(Error::Conflict { .. }) => {
                self.refresh().await;
            }
            Err(e) => {
                debug!(key = %self.key, error = %e, "campaign attempt failed");
                self.next_attempt = self.clock.now() + self.timing.renew_interval / 2;
            }
        }
    }

    async fn renew(&mut self, term: Term) {
        let Ok(value) = self.my_record(term.epoch.0) else {
            return;
        };
        let started = self.clock.now();
        let write =
            self.bucket
                .update(&self.key, value, term.revision, Some(self.timing.lease_ttl));
        let result = tokio::select! {
            r = write => Some(r),
            _ = sleep_until(term.deadline) => None,
        };
        match result {
            Some(Ok(rev)) => {
                self.term = Some(Term {
                    revision: rev,
                    deadline: started + self.timing.act_window(),
                    next_renew: started + self.timing.renew_interval,
                    ..term
                });
                if let Some(o) = self.observed.as_mut() {
                    o.revision = rev;
                    o.record.epoch = term.epoch.0;
                }
                self.observed_at = self.clock.now();
                self.publish();
            }
            Some(Err(Error::Conflict { .. })) => {
                warn!(key = %self.key, epoch = %term.epoch, "lease was taken over; demoting");
                self.term = None;
                self.refresh().await;
            }
            Some(Err(e)) => {
                debug!(key = %self.key, error = %e, "renewal failed; retrying until the deadline");
                if let Some(t) = self.term.as_mut() {
                    t.next_renew = self.clock.now() + self.timing.renew_interval / 4;
                }
            }
            None => {
                warn!(key = %self.key, epoch = %term.epoch, "renewal did not complete before the deadline; demoting");
                self.term = None;
                self.publish();
            }
        }
    }

    fn leader_info(&self) -> Option<LeaderInfo> {
        self.observed
            .as_ref()
            .filter(|o| o.record.handoff_to.is_none())
            .map(|o| LeaderInfo {
                node: o.record.node.clone(),
                instance: o.record.instance.clone(),
                epoch: o.epoch(),
            })
    }

    fn publish(&self) {
        let state = ElectionState {
            leader: match &self.term {
                Some(t) => Some(LeaderInfo {
                    node: self.node.clone(),
                    instance: self.instance.clone(),
                    epoch: t.epoch,
                }),
                None => self.leader_info().filter(|l| {
                    // Our own leftover lease is not a leader.
                    l.instance != self.instance
                }),
            },
            leading: self.term.map(|t| Leadership {
                epoch: t.epoch,
                deadline: t.deadline,
            }),
            candidate: self.candidate,
            lease_seen_at: self.observed.as_ref().map(|_| self.observed_at),
        };
        self.state_tx.send_if_modified(|s| {
            if *s != state {
                *s = state;
                true
            } else {
                false
            }
        });
    }
}
