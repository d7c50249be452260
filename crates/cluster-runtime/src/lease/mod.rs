//! Lease-based election over a [`KvBucket`].
//!
//! One actor task per election owns all state, so transitions never race. The lease key holds a
//! [`LeaseRecord`] with a per-key TTL; the bucket also holds the epoch floor ([`FLOOR_KEY`]):
//!
//! * **acquire**: `create(key, ttl)`; the epoch is `floor + revision` of that write, the floor
//!   read after the write;
//! * **renew**: every `R`, `update(key, expected = our revision, ttl)`; the local deadline becomes
//!   `start of that renewal + T·(1−ε)`;
//! * **demote**: when the deadline passes without a successful renewal, a renewal finds a newer
//!   revision, the key is deleted under us, or *any* revision of the key that we did not write
//!   appears (a foreign write ends the term at once, also while a renewal is in flight: the
//!   watch is read during the renewal write);
//! * **release**: `delete(key, expected = our revision)`; watchers see the delete and campaign
//!   at once;
//! * **crash detection**: the store expires the key `T` after the last renewal and watchers see
//!   `Expired`; as a fallback (lost events, nats-server#3653) a candidate that has seen no change
//!   of the lease for `T·(1+ε)` takes over with `update(expected = the revision it saw)`;
//! * **untrusted records**: a record that does not decode, has an unknown version or an epoch
//!   hint above `floor + revision` is held by an unknown holder: reported, never a leader, taken
//!   over like an abandoned lease after `T·(1+ε)` without a change;
//! * **store reset**: when an acquisition yields an epoch not above the highest one seen here
//!   (revisions restarted), the floor is raised by compare-and-set to that epoch and the
//!   acquisition is retried; the watch is reopened;
//! * **handoff**: the leader rewrites its lease with `handoff_to = target` (CAS); only the target
//!   claims it, by CAS on that revision; if it does not, the lease expires after `T`.
//!
//! Every failed write is retried after an exponential backoff with jitter.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

mod backoff;

use backoff::{Backoff, jittered};
use cluster_core::clock::Clock;
use cluster_core::election::{
    Election, ElectionState, ElectionTiming, LeaderInfo, Leadership, RejectedRecord,
    RejectionReporter,
};
use cluster_core::election::{
    FLOOR_KEY, FloorRecord, LEASE_RECORD_VERSION, LeaseRecord, MAX_FLOOR,
};
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::kv::{KvBucket, KvEntry, KvWatch, Revision, WatchEvent, WatchOp};

/// Far enough in the future to stand for "no timer".
const NEVER: Duration = Duration::from_secs(86_400 * 365);

/// First delay after a failed campaign write.
const RETRY_BASE: Duration = Duration::from_millis(100);

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
        Self::start_inner(
            bucket,
            key.into(),
            node,
            instance.into(),
            timing,
            clock,
            None,
        )
    }

    /// As [`LeaseElection::start`], and hands every record of the bucket it refuses to trust
    /// (lease or epoch floor) to `reporter`, once per revision.
    pub fn start_reporting(
        bucket: Arc<dyn KvBucket>,
        key: impl Into<String>,
        node: NodeId,
        instance: impl Into<String>,
        timing: ElectionTiming,
        clock: Arc<dyn Clock>,
        reporter: RejectionReporter,
    ) -> Result<Self> {
        Self::start_inner(
            bucket,
            key.into(),
            node,
            instance.into(),
            timing,
            clock,
            Some(reporter),
        )
    }

    fn start_inner(
        bucket: Arc<dyn KvBucket>,
        key: String,
        node: NodeId,
        instance: String,
        timing: ElectionTiming,
        clock: Arc<dyn Clock>,
        reporter: Option<RejectionReporter>,
    ) -> Result<Self> {
        timing.validate()?;
        cluster_core::kv::validate_key(&key)?;
        if key == FLOOR_KEY {
            return Err(Error::InvalidArgument(format!(
                "{FLOOR_KEY:?} is reserved for the epoch floor"
            )));
        }
        let now = clock.now();
        let (state_tx, state) = watch::channel(ElectionState {
            leaderless_since: Some(now),
            ..ElectionState::default()
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let actor = Actor {
            bucket,
            key,
            node,
            instance,
            timing,
            clock: clock.clone(),
            state_tx,
            reporter,
            candidate: false,
            cooldown_until: None,
            observed: None,
            observed_at: now,
            term: None,
            next_attempt: now,
            backoff: Backoff::new(
                RETRY_BASE,
                timing.renew_interval.max(Duration::from_secs(1)),
            ),
            highest_epoch: Epoch::ZERO,
            highest_revision: Revision(0),
            floor: Floor::default(),
            reopen_watch: false,
            leaderless_since: Some(now),
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

/// A trusted lease record and the epoch it stands for.
#[derive(Debug, Clone)]
struct Holder {
    record: LeaseRecord,
    epoch: Epoch,
}

/// The lease as last seen in the store.
#[derive(Debug, Clone)]
struct Observed {
    revision: Revision,
    /// `None`: held by an unknown holder (a record this node does not trust).
    holder: Option<Holder>,
}

/// The epoch floor as last read.
#[derive(Debug, Clone, Copy, Default)]
struct Floor {
    value: u64,
    /// Revision of the floor record (valid or not); `None` when the key has no value.
    revision: Option<Revision>,
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
    reporter: Option<RejectionReporter>,
    candidate: bool,
    cooldown_until: Option<Instant>,
    observed: Option<Observed>,
    /// When the observed lease last changed (local clock).
    observed_at: Instant,
    term: Option<Term>,
    /// Earliest instant of the next campaign write (retry backoff).
    next_attempt: Instant,
    backoff: Backoff,
    /// Highest epoch ever seen (trusted records and own terms); new terms must be above it.
    highest_epoch: Epoch,
    /// Highest revision of the key seen; a lower one means the store lost the bucket.
    highest_revision: Revision,
    floor: Floor,
    /// Set when the store looks reset: the watch (blind to restarted revisions) is reopened.
    reopen_watch: bool,
    leaderless_since: Option<Instant>,
}

enum Wake {
    Command(Option<Command>),
    Event(Option<WatchEvent>),
    Timer,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut watch = self.open_watch().await;
        loop {
            if std::mem::take(&mut self.reopen_watch) {
                info!(key = %self.key, "reopening the lease watch (store reset or watch ended)");
                watch = self.open_watch().await;
            }
            // Also after (re)opening the watch, which reads the lease.
            self.publish();
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
                        self.on_event(ev).await;
                    }
                }
                Wake::Event(None) => {
                    warn!(key = %self.key, "lease watch ended; reopening");
                    watch = self.open_watch().await;
                }
                Wake::Timer => {}
            }
            self.step(&mut watch).await;
            self.publish();
        }
    }

    /// Opens the watch, then reads the current lease (watch first so nothing is missed).
    async fn open_watch(&mut self) -> KvWatch {
        let mut backoff = Backoff::new(Duration::from_millis(50), self.timing.renew_interval);
        loop {
            match self.bucket.watch(&self.key).await {
                Ok(w) => {
                    self.refresh().await;
                    return w;
                }
                Err(e) => {
                    warn!(key = %self.key, error = %e, "cannot watch lease; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    async fn refresh(&mut self) {
        if let Err(e) = self.read_floor().await {
            debug!(key = %self.key, error = %e, "cannot read the epoch floor");
        }
        match self.bucket.get(&self.key).await {
            Ok(entry) => self.set_observed(entry).await,
            Err(e) => debug!(key = %self.key, error = %e, "cannot read lease"),
        }
    }

    /// Reads the epoch floor; a malformed one counts as 0 (and is reported).
    async fn read_floor(&mut self) -> Result<u64> {
        let entry = self.bucket.get(FLOOR_KEY).await?;
        let floor = match entry {
            None => Floor::default(),
            Some(e) => match FloorRecord::decode(&e.value) {
                Ok(rec) => Floor {
                    value: rec.floor,
                    revision: Some(e.revision),
                },
                Err(err) => {
                    if self.floor.revision != Some(e.revision) {
                        self.reject(FLOOR_KEY, e.revision, &err.to_string());
                    }
                    Floor {
                        value: 0,
                        revision: Some(e.revision),
                    }
                }
            },
        };
        self.floor = floor;
        Ok(floor.value)
    }

    /// Raises the floor to `target` by compare-and-set on the floor record as last read.
    async fn raise_floor(&mut self, target: u64) -> Result<()> {
        let target = target.min(MAX_FLOOR);
        if target <= self.floor.value && self.floor.revision.is_some() {
            return Ok(());
        }
        let value = FloorRecord::new(target).encode()?;
        let rev = match self.floor.revision {
            Some(expected) => self.bucket.update(FLOOR_KEY, value, expected, None).await,
            None => self.bucket.create(FLOOR_KEY, value, None).await,
        };
        match rev {
            Ok(rev) => {
                warn!(key = %self.key, floor = target, "raised the epoch floor (store reset?)");
                self.floor = Floor {
                    value: target,
                    revision: Some(rev),
                };
                Ok(())
            }
            Err(e) => {
                // Someone else moved it: re-read for the next attempt.
                let _ = self.read_floor().await;
                Err(e)
            }
        }
    }

    /// Reports a record that is not trusted (log, metric, reporter).
    fn reject(&self, key: &str, revision: Revision, reason: &str) {
        crate::metrics::malformed("lease");
        warn!(key, %revision, reason, "election record rejected; treating it as held by an unknown holder");
        if let Some(reporter) = &self.reporter {
            reporter(&RejectedRecord {
                key: key.to_owned(),
                revision,
                reason: reason.to_owned(),
            });
        }
    }

    /// Judges a record of the lease key: trusted holder, or `None` (unknown holder).
    async fn judge(&mut self, revision: Revision, value: &[u8]) -> Option<Holder> {
        let record = match LeaseRecord::decode(value) {
            Ok(r) => r,
            Err(e) => {
                self.reject(&self.key, revision, &e.to_string());
                return None;
            }
        };
        if let Some(epoch) = record.epoch_at(revision, self.floor.value) {
            return Some(Holder { record, epoch });
        }
        // Our floor may be stale (raised after a store reset): read it before rejecting.
        let _ = self.read_floor().await;
        match record.epoch_at(revision, self.floor.value) {
            Some(epoch) => Some(Holder { record, epoch }),
            None => {
                let reason = format!(
                    "epoch {} above floor {} + revision {revision}",
                    record.epoch, self.floor.value
                );
                self.reject(&self.key, revision, &reason);
                None
            }
        }
    }

    /// Records a read of the key (`None`: no live value).
    async fn set_observed(&mut self, entry: Option<KvEntry>) {
        let now = self.clock.now();
        let Some(e) = entry else {
            if self.observed.take().is_some() {
                self.observed_at = now;
            }
            return;
        };
        if self
            .observed
            .as_ref()
            .is_some_and(|o| o.revision == e.revision)
        {
            return;
        }
        if e.revision < self.highest_revision {
            warn!(key = %self.key, revision = %e.revision, highest = %self.highest_revision,
                "lease revision went backwards (store reset?)");
            self.reopen_watch = true;
        }
        self.highest_revision = e.revision;
        let holder = self.judge(e.revision, &e.value).await;
        if let Some(h) = &holder {
            self.highest_epoch = self.highest_epoch.max(h.epoch);
        }
        self.observed = Some(Observed {
            revision: e.revision,
            holder,
        });
        self.observed_at = now;
    }

    async fn on_event(&mut self, ev: WatchEvent) {
        if ev.revision <= self.highest_revision {
            return; // our own write, or already read
        }
        if let Some(term) = self.term {
            // A revision we did not write (ours are at most term.revision): the term ends now.
            warn!(key = %self.key, epoch = %term.epoch, revision = %ev.revision, op = ?ev.op,
                "a write to our lease we did not make; ending the term");
            self.term = None;
            self.publish();
        }
        match ev.op {
            WatchOp::Put => {
                self.set_observed(Some(KvEntry {
                    key: ev.key,
                    value: ev.value,
                    revision: ev.revision,
                }))
                .await
            }
            WatchOp::Delete | WatchOp::Expired => {
                self.highest_revision = ev.revision;
                self.observed = None;
                self.observed_at = self.clock.now();
                self.backoff.reset();
                self.next_attempt = self.clock.now();
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
        self.highest_revision = self.highest_revision.max(rev);
        self.observed = Some(Observed {
            revision: rev,
            holder: Some(Holder {
                record,
                epoch: term.epoch,
            }),
        });
        self.observed_at = self.clock.now();
        self.cooldown_until = Some(self.clock.now() + self.timing.cooldown);
        info!(key = %self.key, to = %to, "handing leadership over");
        Ok(())
    }

    fn not_leader(&self) -> Error {
        let leader = self.leader_info(self.clock.now());
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
        // Wake when the observed lease stops being valid, to publish "no leader".
        let valid_until = self.observed_at + self.timing.lease_ttl;
        if self.observed.is_some() && now < valid_until {
            t = t.min(valid_until);
        }
        if let Some(term) = &self.term {
            t = t.min(term.next_renew).min(term.deadline);
        } else if self.candidate {
            let not_before = self.cooldown_until.unwrap_or(now).max(self.next_attempt);
            let due = match &self.observed {
                None => not_before,
                Some(o) if self.handed_to_me(o) || self.my_leftover(o) => not_before,
                Some(_) => (self.observed_at + self.timing.takeover_after()).max(not_before),
            };
            t = t.min(due);
        }
        t
    }

    fn handed_to_me(&self, o: &Observed) -> bool {
        o.holder
            .as_ref()
            .is_some_and(|h| h.record.handoff_to.as_ref() == Some(&self.node))
    }

    fn my_leftover(&self, o: &Observed) -> bool {
        o.holder
            .as_ref()
            .is_some_and(|h| h.record.instance == self.instance && h.record.handoff_to.is_none())
    }

    /// Does whatever is due now.
    async fn step(&mut self, watch: &mut KvWatch) {
        let now = self.clock.now();
        if let Some(term) = self.term {
            if now >= term.deadline {
                warn!(key = %self.key, epoch = %term.epoch, "lease not renewed in time; demoting");
                self.term = None;
                self.publish();
            } else if now >= term.next_renew {
                self.renew(term, watch).await;
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
            Some(o) if self.handed_to_me(&o) => {
                info!(key = %self.key, "claiming handed-over leadership");
                self.claim(o.revision).await
            }
            Some(o) if self.my_leftover(&o) => {
                // Our own leftover lease from an ended term: release it, then campaign.
                match self.bucket.delete(&self.key, Some(o.revision)).await {
                    Ok(()) => {
                        self.observed = None;
                        self.publish();
                        self.acquire().await;
                    }
                    Err(e) => self.failed("release leftover lease", &e).await,
                }
            }
            Some(o) if now >= self.observed_at + self.timing.takeover_after() => {
                let holder = o.holder.as_ref().map_or_else(
                    || "an unknown holder".to_owned(),
                    |h| h.record.node.to_string(),
                );
                info!(key = %self.key, holder, revision = %o.revision,
                    "lease unchanged for T(1+ε) without an expiry event; taking over");
                self.claim(o.revision).await
            }
            Some(_) => {}
        }
    }

    /// Schedules the next campaign write after a failure (backoff with jitter).
    async fn failed(&mut self, what: &str, e: &Error) {
        let delay = self.backoff.next_delay();
        debug!(key = %self.key, error = %e, ?delay, "{what} failed; retrying");
        self.next_attempt = self.clock.now() + delay;
        if matches!(e, Error::Conflict { .. }) {
            self.refresh().await;
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
        let rev = match result {
            Ok(rev) => rev,
            Err(e) => return self.failed("campaign write", &e).await,
        };
        if rev < self.highest_revision {
            warn!(key = %self.key, revision = %rev, highest = %self.highest_revision,
                "our write got a revision below one already seen (store reset?)");
            self.reopen_watch = true;
        }
        self.highest_revision = rev;
        // The floor is read after the write: a floor raised before it is always seen.
        let floor = match self.read_floor().await {
            Ok(f) => f,
            Err(e) => {
                let _ = self.bucket.delete(&self.key, Some(rev)).await;
                self.observed = None;
                return self.failed("read epoch floor", &e).await;
            }
        };
        let epoch = Epoch(floor.saturating_add(rev.0));
        if epoch <= self.highest_epoch && floor < MAX_FLOOR {
            warn!(key = %self.key, %epoch, highest = %self.highest_epoch,
                "the store returned an epoch not above one already seen; raising the floor");
            let raised = self.raise_floor(self.highest_epoch.0).await;
            let _ = self.bucket.delete(&self.key, Some(rev)).await;
            self.observed = None;
            self.observed_at = self.clock.now();
            match raised {
                Ok(()) => self.next_attempt = self.clock.now() + jittered(RETRY_BASE),
                Err(e) => self.failed("raise epoch floor", &e).await,
            }
            return;
        }
        self.highest_epoch = self.highest_epoch.max(epoch);
        let record = LeaseRecord {
            v: LEASE_RECORD_VERSION,
            node: self.node.clone(),
            instance: self.instance.clone(),
            epoch: 0,
            handoff_to: None,
        };
        self.observed = Some(Observed {
            revision: rev,
            holder: Some(Holder { record, epoch }),
        });
        self.observed_at = self.clock.now();
        self.backoff.reset();
        self.term = Some(Term {
            epoch,
            revision: rev,
            deadline: started + self.timing.act_window(),
            next_renew: started + self.timing.renew_interval,
        });
        info!(key = %self.key, %epoch, "acquired leadership");
        self.publish();
    }

    /// Renews the term. The watch is read while the write is in flight: a revision of the key
    /// we did not write ends the term as soon as its event arrives (the renewal is abandoned; it
    /// can only have landed before that revision).
    async fn renew(&mut self, term: Term, watch: &mut KvWatch) {
        let Ok(value) = self.my_record(term.epoch.0) else {
            return;
        };
        let started = self.clock.now();
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        let write = bucket.update(
            &key,
            value.clone(),
            term.revision,
            Some(self.timing.lease_ttl),
        );
        tokio::pin!(write);
        let mut watching = true;
        let result = loop {
            tokio::select! {
                biased;
                ev = watch.next(), if watching => match ev {
                    Some(ev) if ev.key != key || ev.revision <= self.highest_revision => {}
                    // Our renewal, seen before its reply.
                    Some(ev) if matches!(ev.op, WatchOp::Put) && ev.value == value => {}
                    Some(ev) => return self.on_event(ev).await,
                    None => {
                        warn!(key = %self.key, "lease watch ended during a renewal; reopening");
                        watching = false;
                        self.reopen_watch = true;
                    }
                },
                r = &mut write => break Some(r),
                _ = sleep_until(term.deadline) => break None,
            }
        };
        match result {
            Some(Ok(rev)) => {
                self.term = Some(Term {
                    revision: rev,
                    deadline: started + self.timing.act_window(),
                    next_renew: started + self.timing.renew_interval,
                    ..term
                });
                self.highest_revision = self.highest_revision.max(rev);
                if let Some(o) = self.observed.as_mut() {
                    o.revision = rev;
                }
                self.observed_at = self.clock.now();
                self.publish();
            }
            Some(Err(Error::Conflict { .. })) => {
                warn!(key = %self.key, epoch = %term.epoch, "lease was taken over; demoting");
                self.term = None;
                self.publish();
                self.refresh().await;
            }
            Some(Err(e)) => {
                debug!(key = %self.key, error = %e, "renewal failed; retrying until the deadline");
                if let Some(t) = self.term.as_mut() {
                    t.next_renew = self.clock.now() + jittered(self.timing.renew_interval / 4);
                }
            }
            None => {
                warn!(key = %self.key, epoch = %term.epoch, "renewal did not complete before the deadline; demoting");
                self.term = None;
                self.publish();
            }
        }
    }

    /// Another node's leader record, if its lease is valid at `now` (`T` after this node last
    /// saw it change).
    fn leader_info(&self, now: Instant) -> Option<LeaderInfo> {
        if now >= self.observed_at + self.timing.lease_ttl {
            return None;
        }
        let holder = self.observed.as_ref()?.holder.as_ref()?;
        (holder.record.handoff_to.is_none() && holder.record.instance != self.instance).then(|| {
            LeaderInfo {
                node: holder.record.node.clone(),
                instance: holder.record.instance.clone(),
                epoch: holder.epoch,
            }
        })
    }

    fn publish(&mut self) {
        let now = self.clock.now();
        let leader = match &self.term {
            Some(t) => Some(LeaderInfo {
                node: self.node.clone(),
                instance: self.instance.clone(),
                epoch: t.epoch,
            }),
            None => self.leader_info(now),
        };
        if leader.is_some() {
            self.leaderless_since = None;
        } else if self.leaderless_since.is_none() {
            self.leaderless_since = Some(now);
        }
        let state = ElectionState {
            leader,
            leaderless_since: self.leaderless_since,
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
