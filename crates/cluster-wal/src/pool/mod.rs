//! The app-facing async database API on sqlx: [`WalPool`], from [`WalDb::pool`].
//!
//! One handle for the app on every node; it follows the role of the local replica:
//!
//! * **leader**: a pool of read-write connections on the replicated file. Reads go through
//!   [`WalPool::acquire`] (or [`WalPool::current`]); writes only through
//!   [`WalPool::begin`] with the term's fencing token, which returns a [`FencedTx`]. Every
//!   connection carries a commit hook that refuses (rolls back) any commit that is not a
//!   `FencedTx` commit under an open write gate and an accepted token, so a write that
//!   bypasses the token, or one attempted after the lease lapsed or the node stepped down, is
//!   refused by SQLite itself. Connections never checkpoint (`wal_autocheckpoint=0`, no
//!   checkpoint on close): the leader's capture owns checkpointing. Commits ring the WAL
//!   doorbell, so the capture ships them at once; in commit-wait mode `FencedTx::commit`
//!   returns after the log acknowledged the transaction.
//! * **standby**: a pool of read-only connections (`SQLITE_OPEN_READONLY`, `query_only`);
//!   queries run while the standby applies. [`WalPool::begin`] fails with
//!   [`WalError::NotLeader`]; a write statement on a standby connection fails with SQLite's
//!   read-only error, which converts to `NotLeader` too.
//!
//! **Role changes.** Every call looks at the current role and, when it changed since the
//! previous call (promotion, demotion, a new term), opens the pool of the new role and closes
//! the old one (in the background: closing waits for checked-out connections to come back).
//! **Snapshot restores** of the standby file (catch-up, resync) close the pool first and
//! wait (up to 10 s) for checked-out connections to come back — a connection open across a
//! restore would break it — and calls wait until the restore finished. Connections and [`sqlx::SqlitePool`] clones
//! obtained before the change keep their old behaviour — a stale leader connection can no
//! longer commit (its write gate is revoked), a stale standby connection stays read-only —
//! so get them per request (`pool.acquire()` / `pool.begin(token)`) rather than keeping
//! them; watch [`WalDb::role_watch`] to react to changes.
//!
//! ```no_run
//! # async fn example(db: cluster_wal::WalDb, token: cluster_core::Epoch) -> cluster_wal::Result<()> {
//! use cluster_wal::sqlx;
//!
//! let pool = db.pool(); // cheap; clones share the connections
//! // Leader, in a handler, with the term's fencing token:
//! let mut tx = pool.begin(token).await?;
//! sqlx::query("INSERT INTO notes(body) VALUES (?)")
//!     .bind("hello")
//!     .execute(&mut *tx)
//!     .await?;
//! tx.commit().await?; // commit-wait mode: returns after the log acknowledged it
//!
//! // Any node (leader or standby):
//! let mut conn = pool.acquire().await?;
//! let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
//!     .fetch_one(&mut *conn)
//!     .await?;
//! # let _ = n;
//! # Ok(())
//! # }
//! ```

mod connect;
mod tx;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cluster_core::Epoch;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqlitePool};
use tokio::sync::watch;

use crate::error::{Result, WalError};
use crate::follower::RestoreFence;
use crate::leader::Leader;
use crate::resource::{WalDb, WalRole};

pub use tx::FencedTx;

/// `SQLITE_CONSTRAINT_COMMITHOOK`: the commit hook turned a commit into a rollback.
const COMMITHOOK: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_COMMITHOOK;

/// The app's sqlx pool on the replicated database (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct WalPool {
    db: WalDb,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalPool")
            .field("db", &self.db.path())
            .field("role", &self.db.role())
            .finish()
    }
}

/// Which pool is open: the leader's of one term, or the standby's.
#[derive(Clone)]
enum Mode {
    Leader(Arc<Leader>),
    Standby,
}

impl Mode {
    fn same(&self, other: &Mode) -> bool {
        match (self, other) {
            (Mode::Leader(a), Mode::Leader(b)) => Arc::ptr_eq(a, b),
            (Mode::Standby, Mode::Standby) => true,
            _ => false,
        }
    }
}

struct Current {
    mode: Mode,
    pool: SqlitePool,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    /// A snapshot restore of the file is running: no connection may open.
    restoring: bool,
    /// Short-lived rusqlite connections open on the file ([`WalDb::read`]).
    readers: usize,
}

/// How long a restore waits for checked-out connections to come back before it goes on.
const RESTORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pools of one database, shared by every [`WalPool`] of its [`WalDb`]; also the
/// follower's [`RestoreFence`].
pub(crate) struct Shared {
    max_connections: u32,
    state: Mutex<State>,
    /// Signalled when `readers` drops to 0.
    no_readers: Condvar,
    restoring: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalPoolShared")
            .field("max_connections", &self.max_connections)
            .field("restoring", &*self.restoring.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Call inside the runtime that closes the pools.
    pub(crate) fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            state: Mutex::new(State::default()),
            no_readers: Condvar::new(),
            restoring: watch::channel(false).0,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool for `mode` (opening it and closing the previous one when the mode changed),
    /// `None` while a restore runs.
    fn try_pool(&self, db: &WalDb, mode: &Mode) -> Option<SqlitePool> {
        let mut st = self.state();
        if st.restoring {
            return None;
        }
        if let Some(c) = st.current.as_ref().filter(|c| c.mode.same(mode)) {
            return Some(c.pool.clone());
        }
        let pool = match mode {
            Mode::Leader(_) => connect::leader_pool(db.path(), self.max_connections),
            Mode::Standby => connect::standby_pool(db.path(), self.max_connections),
        };
        tracing::debug!(
            db = %db.path().display(),
            leader = matches!(mode, Mode::Leader(_)),
            "sqlx pool opened for the current role"
        );
        let old = st.current.replace(Current {
            mode: mode.clone(),
            pool: pool.clone(),
        });
        drop(st);
        if let Some(old) = old {
            self.runtime.spawn(async move { old.pool.close().await });
        }
        Some(pool)
    }

    /// The pool for `mode`, waiting for a running restore to finish.
    async fn pool(&self, db: &WalDb, mode: &Mode) -> SqlitePool {
        let mut rx = self.restoring.subscribe();
        loop {
            if let Some(p) = self.try_pool(db, mode) {
                return p;
            }
            // The sender lives in `self`: `wait_for` cannot fail while we borrow it.
            let _ = rx.wait_for(|r| !*r).await;
        }
    }

    /// Registers a short-lived connection on the file (of [`WalDb::read`]), waiting for a
    /// running restore to finish; a restore waits for it to be dropped.
    pub(crate) async fn enter_read(self: &Arc<Self>) -> ReadGuard {
        let mut rx = self.restoring.subscribe();
        loop {
            {
                let mut st = self.state();
                if !st.restoring {
                    st.readers += 1;
                    return ReadGuard(self.clone());
                }
            }
            let _ = rx.wait_for(|r| !*r).await;
        }
    }

    /// Closes the open pool (on shutdown); the next use opens a new one.
    pub(crate) fn close(&self) {
        if let Some(old) = self.state().current.take() {
            self.runtime.spawn(async move { old.pool.close().await });
        }
    }
}

impl RestoreFence for Shared {
    fn before_restore(&self) {
        let deadline = std::time::Instant::now() + RESTORE_CLOSE_TIMEOUT;
        let old = {
            let mut st = self.state();
            st.restoring = true;
            st.current.take()
        };
        self.restoring.send_replace(true);
        if let Some(old) = old {
            // The timer must be created inside the runtime's context.
            let closed = self.runtime.block_on(async move {
                tokio::time::timeout(RESTORE_CLOSE_TIMEOUT, old.pool.close()).await
            });
            if closed.is_err() {
                tracing::warn!(
                    "app connections still checked out after {RESTORE_CLOSE_TIMEOUT:?}; \
                     restoring the snapshot anyway (it may fail and be retried)"
                );
            }
        }
        let st = self.state();
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let (st, _) = self
            .no_readers
            .wait_timeout_while(st, wait, |st| st.readers > 0)
            .unwrap_or_else(|e| e.into_inner());
        if st.readers > 0 {
            tracing::warn!(
                readers = st.readers,
                "WalDb::read connections still open; restoring the snapshot anyway"
            );
        }
    }

    fn after_restore(&self) {
        self.state().restoring = false;
        self.restoring.send_replace(false);
    }
}

impl WalPool {
    pub(crate) fn new(db: WalDb, shared: Arc<Shared>) -> Self {
        Self { db, shared }
    }

    /// The role the pool currently serves.
    pub fn role(&self) -> WalRole {
        self.db.role()
    }

    /// The database handle this pool belongs to.
    pub fn db(&self) -> &WalDb {
        &self.db
    }

    fn mode(&self) -> Mode {
        match self.db.active() {
            Some((_, leader)) => Mode::Leader(leader),
            None => Mode::Standby,
        }
    }

    /// The sqlx pool of the current role, usable as an executor for reads
    /// (`.fetch_all(&pool.current().await)`). Valid for the current role only: after a role
    /// change (or a snapshot restore on the standby) it is closed; get it again. Waits while
    /// the standby restores a snapshot.
    pub async fn current(&self) -> SqlitePool {
        self.shared.pool(&self.db, &self.mode()).await
    }

    /// A connection of the current role's pool, for reads. On the leader it is a read-write
    /// connection whose commits are refused unless made through [`WalPool::begin`]; on a
    /// standby it is read-only. Waits while the standby restores a snapshot.
    pub async fn acquire(&self) -> Result<PoolConnection<Sqlite>> {
        let mut attempts = 0;
        loop {
            match self.current().await.acquire().await {
                // The pool was closed between lookup and acquire (role change or restore).
                Err(sqlx::Error::PoolClosed) if attempts < 3 => attempts += 1,
                r => return Ok(r?),
            }
        }
    }

    /// Begins a write transaction under the fencing token `token` (see [`FencedTx`]).
    ///
    /// Fails with [`WalError::NotLeader`] on a standby and [`WalError::NotWritable`] (kind
    /// `Fenced`) when `token` is not the term this node leads or the app's epoch check
    /// refuses it.
    pub async fn begin(&self, token: Epoch) -> Result<FencedTx> {
        let leader = match self.db.leader_for(token) {
            Ok(l) => l,
            Err(e) => {
                return Err(match self.db.role() {
                    WalRole::Standby => WalError::NotLeader(format!(
                        "{} is a read-only standby here; writes go to the leader's node \
                         (WalPool::begin with its fencing token); reads work on every node",
                        self.db.path().display()
                    )),
                    WalRole::Stopped => WalError::Stopped("the replica was shut down".to_owned()),
                    WalRole::Leader(_) => e,
                });
            }
        };
        let pool = self
            .shared
            .pool(&self.db, &Mode::Leader(leader.clone()))
            .await;
        let durability = self.db.durability();
        FencedTx::begin(&pool, self.db.clone(), leader, token, durability).await
    }

    /// Closes the open pool; the next call opens one again.
    pub fn close(&self) {
        self.shared.close();
    }
}

/// A registered short-lived connection (see [`Shared::enter_read`]); drop it after the
/// connection closed.
pub(crate) struct ReadGuard(Arc<Shared>);

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.readers = st.readers.saturating_sub(1);
        if st.readers == 0 {
            self.0.no_readers.notify_all();
        }
    }
}

fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse().ok()),
        _ => None,
    }
}

/// Whether `e` is worth retrying: a busy/locked SQLite error, a pool timeout, or a pool
/// closed under the call by a role change or a restore (the retry sees the new role).
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
        || sqlite_code(e).is_some_and(|c| {
            let primary = c & 0xff;
            primary == rusqlite::ffi::SQLITE_BUSY || primary == rusqlite::ffi::SQLITE_LOCKED
        })
}

impl From<sqlx::Error> for WalError {
    /// Commit-hook vetoes become [`WalError::NotWritable`], writes on a read-only (standby)
    /// connection [`WalError::NotLeader`]; everything else [`WalError::Sqlx`].
    fn from(e: sqlx::Error) -> Self {
        match sqlite_code(&e) {
            Some(COMMITHOOK) => WalError::NotWritable(
                "commit refused: only a FencedTx of the current term may commit \
                 (lease lapsed, stepped down, fenced, or the commit bypassed WalPool::begin)"
                    .to_owned(),
            ),
            Some(c) if c & 0xff == rusqlite::ffi::SQLITE_READONLY => WalError::NotLeader(format!(
                "write on a read-only connection ({e}): this node is a standby; writes go to \
                 the leader through WalPool::begin with its fencing token"
            )),
            _ => WalError::Sqlx(e),
        }
    }
}
