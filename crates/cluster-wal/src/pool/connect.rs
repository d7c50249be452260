//! The sqlx pools behind [`WalPool`](super::WalPool): connect options per role and the hooks
//! installed on every connection (commit veto, WAL doorbell, no checkpoint on close).

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

use rusqlite::ffi;
use sqlx::Connection as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sqlite::Doorbell;

/// How long a pool connection waits for a lock (the writer actor, the capture barrier or
/// another app transaction) before failing with `SQLITE_BUSY`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's pool: read-write connections on the replicated file with the leader pragmas
/// (`wal_autocheckpoint=0`, `synchronous=FULL`, `mmap_size=0`), the WAL doorbell, no
/// checkpoint on close, and a commit hook that refuses every commit until a
/// [`FencedTx`](super::FencedTx) replaces it with its token-bound hook.
pub(crate) fn leader_pool(path: &Path, max_connections: u32) -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Full)
        // Before the WAL hook is installed (after_connect): setting it later would remove it.
        .pragma("wal_autocheckpoint", "0")
        .pragma("mmap_size", "0");
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .after_connect(|conn, _| Box::pin(prepare_leader_connection(conn)))
        .after_release(|conn, _| Box::pin(reusable(conn)))
        .connect_lazy_with(opts)
}

/// A standby's pool: read-only connections (`SQLITE_OPEN_READONLY`, `query_only=ON`); every
/// commit is refused by the commit hook as well, and the same pragmas as on the leader are
/// denied.
pub(crate) fn standby_pool(path: &Path, max_connections: u32) -> SqlitePool {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("query_only", "ON");
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                handle.set_commit_hook(|| false);
                install_authorizer(handle.as_raw_handle())
            })
        })
        .after_release(|conn, _| Box::pin(reusable(conn)))
        .connect_lazy_with(opts)
}

/// Whether a released connection may go back to the pool: no transaction open, neither in
/// sqlx's bookkeeping nor in SQLite. A commit refused by the commit hook is rolled back by
/// SQLite, so sqlx's rollback of the dropped transaction fails and its depth stays at 1; a
/// transaction the app began with a raw `BEGIN` and never ended would pin a read snapshot
/// (and the WAL) forever. Such connections are closed instead.
async fn reusable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    // Locking the handle is a round trip to the connection's worker: the rollback queued by
    // a dropped transaction has run when it returns.
    let mut handle = conn.lock_handle().await?;
    let autocommit = autocommit(handle.as_raw_handle());
    drop(handle);
    Ok(autocommit && !conn.is_in_transaction())
}

async fn prepare_leader_connection(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    if !mode.eq_ignore_ascii_case("wal") {
        // A rollback-journal commit would bypass the WAL, i.e. capture and replication.
        return Err(sqlx::Error::Configuration(
            format!("the replicated database is not in WAL mode (journal_mode={mode})").into(),
        ));
    }
    let mut handle = conn.lock_handle().await?;
    // `false` turns the commit into a rollback: nothing commits without a FencedTx.
    handle.set_commit_hook(|| false);
    install_raw_hooks(handle.as_raw_handle())?;
    install_authorizer(handle.as_raw_handle())
}

/// Rings the process-wide WAL doorbell after every commit, so the leader's capture reads the
/// new frames at once (as for the writer actor's own commits). Cannot unwind.
extern "C" fn ring_doorbell(
    _arg: *mut c_void,
    _db: *mut ffi::sqlite3,
    _name: *const c_char,
    _frames: c_int,
) -> c_int {
    Doorbell::ring();
    ffi::SQLITE_OK
}

/// SQLite's autocommit flag (`false` inside an open transaction).
fn autocommit(db: NonNull<ffi::sqlite3>) -> bool {
    // SAFETY: `db` comes from `LockedSqliteHandle::as_raw_handle` (valid, open, and not used
    // by the worker thread while locked); `sqlite3_get_autocommit` only reads a flag.
    #[allow(unsafe_code)]
    let on = unsafe { ffi::sqlite3_get_autocommit(db.as_ptr()) };
    on != 0
}

/// Installs the WAL doorbell hook and `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE` (closing a pool
/// connection must never checkpoint or delete the WAL behind the capture).
fn install_raw_hooks(db: NonNull<ffi::sqlite3>) -> Result<(), sqlx::Error> {
    let mut previous: c_int = -1;
    type WalHook =
        unsafe extern "C" fn(*mut c_void, *mut ffi::sqlite3, *const c_char, c_int) -> c_int;
    let hook: WalHook = ring_doorbell;
    // SAFETY: `db` comes from `LockedSqliteHandle::as_raw_handle`: a valid, open connection
    // whose worker thread is parked while the handle is locked, so no other thread uses it
    // during these calls. sqlx and rusqlite link the same libsqlite3-sys (one `links =
    // "sqlite3"` crate in the graph), so the pointer types are identical. `ring_doorbell` is a
    // plain function without state, valid for the program's lifetime, and the hook argument is
    // unused (null). SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE takes an int and an `int*` that SQLite
    // writes the new setting to; it points at a live local.
    #[allow(unsafe_code)]
    let rc = unsafe {
        ffi::sqlite3_wal_hook(db.as_ptr(), Some(hook), std::ptr::null_mut());
        ffi::sqlite3_db_config(
            db.as_ptr(),
            ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            1 as c_int,
            &mut previous as *mut c_int,
        )
    };
    if rc == ffi::SQLITE_OK && previous == 1 {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE failed (rc {rc}, value {previous})").into(),
        ))
    }
}

/// Pragmas an app statement may not run on a pool connection: checkpoints (the leader's
/// capture owns checkpointing, behind its barrier; a TRUNCATE or RESTART would reset the WAL
/// behind it) and changes of the journal mode, the autocheckpoint (which would also remove
/// the doorbell hook) and the locking mode. Reading their values stays allowed.
fn pragma_denied(name: &[u8], has_arg: bool) -> bool {
    let name = name.to_ascii_lowercase();
    match name.as_slice() {
        b"wal_checkpoint" => true,
        b"journal_mode" | b"wal_autocheckpoint" | b"locking_mode" => has_arg,
        _ => false,
    }
}

/// The authorizer of pool connections: denies the pragmas of [`pragma_denied`] at prepare
/// time (`SQLITE_AUTH`, "not authorized"); allows everything else.
extern "C" fn authorize(
    _arg: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    _db_name: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    if action != ffi::SQLITE_PRAGMA || arg1.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: for SQLITE_PRAGMA, SQLite passes the pragma name (checked non-null above) and
    // its argument (or null) as NUL-terminated strings valid for the duration of the call.
    #[allow(unsafe_code)]
    let name = unsafe { std::ffi::CStr::from_ptr(arg1) };
    if pragma_denied(name.to_bytes(), !arg2.is_null()) {
        ffi::SQLITE_DENY
    } else {
        ffi::SQLITE_OK
    }
}

fn install_authorizer(db: NonNull<ffi::sqlite3>) -> Result<(), sqlx::Error> {
    type Authorizer = unsafe extern "C" fn(
        *mut c_void,
        c_int,
        *const c_char,
        *const c_char,
        *const c_char,
        *const c_char,
    ) -> c_int;
    let auth: Authorizer = authorize;
    // SAFETY: `db` comes from `LockedSqliteHandle::as_raw_handle` (valid, open, not used by
    // the worker thread while locked); `authorize` is a stateless function valid for the
    // program's lifetime and its argument is unused (null). sqlx installs no authorizer.
    #[allow(unsafe_code)]
    let rc = unsafe { ffi::sqlite3_set_authorizer(db.as_ptr(), Some(auth), std::ptr::null_mut()) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("sqlite3_set_authorizer failed (rc {rc})").into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::pragma_denied;

    #[test]
    fn checkpoints_and_mode_changes_are_denied_reads_are_not() {
        assert!(pragma_denied(b"wal_checkpoint", false));
        assert!(pragma_denied(b"WAL_CHECKPOINT", true));
        assert!(pragma_denied(b"journal_mode", true));
        assert!(!pragma_denied(b"journal_mode", false));
        assert!(pragma_denied(b"wal_autocheckpoint", true));
        assert!(pragma_denied(b"locking_mode", true));
        assert!(!pragma_denied(b"user_version", true));
        assert!(!pragma_denied(b"table_info", true));
    }
}
