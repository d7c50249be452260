//! [`FencedTx`]: a write transaction of the leader's pool under a fencing token.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cluster_core::Epoch;
use sqlx::sqlite::{Sqlite, SqliteConnection};

use crate::error::{Result, WalError};
use crate::leader::{Durability, Leader};
use crate::resource::WalDb;

/// A write transaction (`BEGIN IMMEDIATE`) on a leader connection, opened by
/// [`WalPool::begin`](super::WalPool::begin) with the term's fencing token.
///
/// Run statements through it as through a `sqlx::Transaction` (`.execute(&mut *tx)`), then
/// [`commit`](FencedTx::commit). Dropping it rolls the transaction back.
///
/// The commit is allowed only while all of these hold, checked again inside SQLite's commit
/// (a `commit_hook` on this connection): the transaction is being committed by
/// [`FencedTx::commit`] (a `COMMIT` statement run through the connection is refused), the
/// leader's write gate is open (revoked when the node steps down or is fenced) and the app's
/// epoch check (see [`WalDb::set_epoch_check`]) accepts the token. A refused commit is rolled
/// back by SQLite and reported as [`WalError::NotWritable`].
pub struct FencedTx {
    tx: sqlx::Transaction<'static, Sqlite>,
    token: Epoch,
    leader: Arc<Leader>,
    db: WalDb,
    durability: Durability,
    permit: Arc<AtomicBool>,
}

impl std::fmt::Debug for FencedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedTx")
            .field("token", &self.token)
            .field("db", &self.db.path())
            .finish_non_exhaustive()
    }
}

/// Lets the commit hook accept exactly the commit in progress; closes again when dropped
/// (also when the commit future is cancelled).
struct Permit<'a>(&'a AtomicBool);

impl<'a> Permit<'a> {
    fn grant(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl FencedTx {
    /// Begins the transaction on a connection of the leader's pool and binds the
    /// connection's commit hook to this transaction.
    pub(crate) async fn begin(
        pool: &sqlx::SqlitePool,
        db: WalDb,
        leader: Arc<Leader>,
        token: Epoch,
        durability: Durability,
    ) -> Result<Self> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let permit = Arc::new(AtomicBool::new(false));
        let hook_permit = permit.clone();
        let gate = leader.gate().clone();
        let check = db.epoch_check();
        // Replaces the previous hook of this connection (the deny-all hook of a fresh
        // connection, or the disarmed hook of an earlier transaction). It stays installed
        // after this transaction, disarmed: later commits on the connection are refused.
        tx.lock_handle().await?.set_commit_hook(move || {
            hook_permit.load(Ordering::SeqCst)
                && gate.allows()
                && check.as_ref().is_none_or(|c| c(token).is_ok())
        });
        Ok(Self {
            tx,
            token,
            leader,
            db,
            durability,
            permit,
        })
    }

    /// The fencing token this transaction writes under.
    pub fn token(&self) -> Epoch {
        self.token
    }

    /// Commits with the database's configured durability ([`crate::WithSqlite::durability`]).
    /// Returns the txid covering the commit in commit-wait mode (`None` in async mode).
    pub async fn commit(self) -> Result<Option<u64>> {
        let d = self.durability;
        self.commit_with(d).await
    }

    /// Commits; with [`Durability::CommitWait`] returns only after the log acknowledged the
    /// transaction, with the txid covering it. With [`Durability::Async`] it returns after
    /// the local commit (the WAL doorbell makes the leader capture and ship it at once).
    ///
    /// Refused ([`WalError::NotWritable`], kind `Fenced`, nothing committed) when the token is
    /// no longer the term this node leads or the lease lapsed. In commit-wait mode an error
    /// after the local commit (fenced before the acknowledgement) means the transaction may
    /// be lost: treat it as not committed.
    pub async fn commit_with(self, durability: Durability) -> Result<Option<u64>> {
        let FencedTx {
            tx,
            token,
            leader,
            db,
            permit,
            ..
        } = self;
        // The term may have ended since `begin` (step-down, new leader, lapsed lease); the
        // commit hook repeats the gate and epoch checks inside SQLite's commit.
        let current = db.leader_for(token)?;
        if !Arc::ptr_eq(&current, &leader) {
            return Err(WalError::NotWritable(format!(
                "the leader of epoch {token} was restarted since the transaction began"
            )));
        }
        {
            let _permit = Permit::grant(&permit);
            tx.commit().await?;
        }
        match durability {
            Durability::Async => Ok(None),
            Durability::CommitWait => {
                // The commit is in the WAL: a capture pass run now covers it, and its txid is
                // what the log must acknowledge.
                let ((), txid) = leader.write(Durability::CommitWait, |_| Ok(())).await?;
                Ok(Some(txid))
            }
        }
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

impl Deref for FencedTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for FencedTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}
