//! SQLite connection helpers: pragmas, the WAL doorbell, `PERSIST_WAL`, the commit gate,
//! `sqlite_dbpage` access and integrity checks.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, WalError};

/// The `-wal` file of a database.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// The `-shm` file of a database.
pub fn shm_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-shm");
    PathBuf::from(s)
}

/// Fails with [`WalError::DbpageUnavailable`] when the linked SQLite lacks `sqlite_dbpage`
/// (other failures, e.g. a file that is not a database, are returned as they are).
pub fn check_dbpage(conn: &Connection) -> Result<()> {
    match conn.prepare("SELECT 1 FROM sqlite_dbpage LIMIT 0") {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("no such table") => Err(WalError::DbpageUnavailable),
        Err(e) => Err(e.into()),
    }
}

/// Reads the schema version on `conn` (a connection to `path`) before anything writes: a file
/// that is not an SQLite database is refused as [`WalError::NotADatabase`] naming it, untouched.
/// (Done through SQLite, never by opening the file separately: closing another descriptor of
/// the database file would drop this process's POSIX locks on it.)
pub fn check_database(conn: &Connection, path: &Path) -> Result<()> {
    match conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            Err(WalError::NotADatabase {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets `SQLITE_FCNTL_PERSIST_WAL` so that closing the last connection keeps the `-wal` file.
pub fn persist_wal(conn: &Connection) -> Result<()> {
    let mut on: c_int = 1;
    // SAFETY: `conn.handle()` is a valid open database handle for the lifetime of `conn`; the
    // database name is a NUL-terminated static string; PERSIST_WAL reads and writes one c_int
    // through the pointer, which points at a live local variable.
    #[allow(unsafe_code)]
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut c_int).cast(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(WalError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("SQLITE_FCNTL_PERSIST_WAL".to_owned()),
        )))
    }
}

struct Bell {
    generation: Mutex<u64>,
    cond: Condvar,
}

static DOORBELL: LazyLock<Bell> = LazyLock::new(|| Bell {
    generation: Mutex::new(0),
    cond: Condvar::new(),
});

/// The process-wide WAL doorbell rung by every leader connection's `wal_hook` after a commit.
/// Tailers wait on it with a timeout (their poll interval) and then check their own WAL.
pub struct Doorbell;

impl Doorbell {
    /// Rings the doorbell.
    pub fn ring() {
        let mut g = DOORBELL
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        DOORBELL.cond.notify_all();
    }

    /// The current generation.
    pub fn generation() -> u64 {
        *DOORBELL
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the generation differs from `seen` or `timeout` passes; returns the current
    /// generation.
    pub fn wait(seen: u64, timeout: Duration) -> u64 {
        let g = DOORBELL
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (g, _) = DOORBELL
            .cond
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

fn wal_hook(_: &rusqlite::hooks::Wal, _frames: c_int) -> rusqlite::Result<()> {
    Doorbell::ring();
    Ok(())
}

/// Decides whether commits on leader connections are allowed: revoked when the node stops
/// being the leader or is fenced, and optionally bounded by a lease deadline on the local
/// monotonic clock. Checked inside every commit by a `commit_hook` (an atomic read only).
#[derive(Debug, Clone)]
pub struct WriteGate {
    inner: Arc<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    open: AtomicBool,
    base: Instant,
    /// Deadline in nanoseconds since `base`; `u64::MAX` = none.
    deadline_ns: AtomicU64,
}

impl Default for WriteGate {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteGate {
    /// An open gate without deadline.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(GateInner {
                open: AtomicBool::new(true),
                base: Instant::now(),
                deadline_ns: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Closes the gate: every later commit is rolled back.
    pub fn revoke(&self) {
        self.inner.open.store(false, Ordering::SeqCst);
    }

    /// Reopens the gate.
    pub fn open(&self) {
        self.inner.open.store(true, Ordering::SeqCst);
    }

    /// Sets (or clears) the lease deadline after which commits are refused.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        let ns = deadline.map_or(u64::MAX, |d| {
            d.saturating_duration_since(self.inner.base).as_nanos() as u64
        });
        self.inner.deadline_ns.store(ns, Ordering::SeqCst);
    }

    /// Whether a commit is allowed now.
    pub fn allows(&self) -> bool {
        if !self.inner.open.load(Ordering::SeqCst) {
            return false;
        }
        let d = self.inner.deadline_ns.load(Ordering::SeqCst);
        d == u64::MAX || (self.inner.base.elapsed().as_nanos() as u64) < d
    }
}

/// Opens a leader-side application connection: WAL mode, `wal_autocheckpoint=0` (set before
/// the WAL hook, which it would otherwise replace), `busy_timeout` 5 s, `synchronous=FULL`,
/// `mmap_size=0`, the doorbell `wal_hook` and the commit gate.
pub fn open_leader_connection(path: &Path, gate: &WriteGate) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(WalError::NotWritable(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.wal_hook(Some(wal_hook));
    let gate = gate.clone();
    conn.commit_hook(Some(move || !gate.allows()))?;
    Ok(conn)
}

/// Opens a read-only connection (standby application reads, verification).
pub fn open_readonly(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// Reads every page through `sqlite_dbpage` (in the connection's current read snapshot).
pub fn read_pages(conn: &Connection) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Runs `PRAGMA quick_check` (or `integrity_check` when `full`); `Err` unless it says `ok`.
pub fn check_integrity(conn: &Connection, full: bool) -> Result<()> {
    let sql = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    let mut stmt = conn.prepare(sql)?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(WalError::Integrity(rows.join("; ")))
    }
}

/// Microseconds since the Unix epoch (for lag metrics only; never compared across nodes for
/// decisions).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
