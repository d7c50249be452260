//! Makes the `sqlite_dbpage` virtual table available without any build configuration.
//!
//! The standby writes pages through `sqlite_dbpage`, which SQLite compiles only with
//! `SQLITE_ENABLE_DBPAGE_VTAB`. `libsqlite3-sys` (bundled) takes extra defines only from the
//! `LIBSQLITE3_FLAGS` environment variable, which a library cannot set for its users. So, unless
//! that variable already enables the table (this workspace's `.cargo/config.toml` does), this
//! script compiles the very amalgamation `libsqlite3-sys` bundles (its `DEP_SQLITE3_INCLUDE`
//! directory: same SQLite version, same bindings) with `libsqlite3-sys`'s own defines plus
//! `SQLITE_ENABLE_DBPAGE_VTAB` and links it whole (`+whole-archive`) into this crate. This crate
//! precedes `libsqlite3-sys` on the link line (it depends on it), so every `sqlite3_*` symbol
//! is resolved from this copy and the linker never pulls `libsqlite3-sys`'s object: the
//! process has exactly one SQLite. Tested by `cargo xtask sqlite-external` (a crate outside the
//! workspace, without `LIBSQLITE3_FLAGS`, opens a standby and applies a transaction).

use std::env;
use std::path::PathBuf;

const DBPAGE: &str = "SQLITE_ENABLE_DBPAGE_VTAB";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for v in [
        "LIBSQLITE3_FLAGS",
        "SQLITE_MAX_VARIABLE_NUMBER",
        "SQLITE_MAX_EXPR_DEPTH",
        "SQLITE_MAX_COLUMN",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let extras = env::var("LIBSQLITE3_FLAGS").unwrap_or_default();
    if extras.contains(DBPAGE) {
        // libsqlite3-sys compiled it already.
        return;
    }
    let Some(include) = env::var_os("DEP_SQLITE3_INCLUDE") else {
        println!(
            "cargo:warning=cluster-wal: libsqlite3-sys exported no amalgamation (not `bundled`?); \
             the standby needs SQLite built with {DBPAGE}"
        );
        return;
    };
    let source = PathBuf::from(include).join("sqlite3.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let mut cfg = cc::Build::new();
    cfg.file(&source).warnings(false).cargo_metadata(false);
    // libsqlite3-sys 0.37's defines (bundled build), then the optional features any dependent
    // may enable on it (harmless extra symbols otherwise), then ours.
    for d in [
        "SQLITE_CORE",
        "SQLITE_DEFAULT_FOREIGN_KEYS=1",
        "SQLITE_ENABLE_API_ARMOR",
        "SQLITE_ENABLE_COLUMN_METADATA",
        "SQLITE_ENABLE_DBSTAT_VTAB",
        "SQLITE_ENABLE_FTS3",
        "SQLITE_ENABLE_FTS3_PARENTHESIS",
        "SQLITE_ENABLE_FTS5",
        "SQLITE_ENABLE_JSON1",
        "SQLITE_ENABLE_LOAD_EXTENSION=1",
        "SQLITE_ENABLE_MEMORY_MANAGEMENT",
        "SQLITE_ENABLE_RTREE",
        "SQLITE_ENABLE_STAT4",
        "SQLITE_SOUNDEX",
        "SQLITE_THREADSAFE=1",
        "SQLITE_USE_URI",
        "HAVE_USLEEP=1",
        "HAVE_ISNAN",
        "HAVE_LOCALTIME_R",
        "_POSIX_THREAD_SAFE_FUNCTIONS",
        "SQLITE_ENABLE_UNLOCK_NOTIFY",
        "SQLITE_ENABLE_PREUPDATE_HOOK",
        "SQLITE_ENABLE_SESSION",
        DBPAGE,
    ] {
        cfg.flag(format!("-D{d}"));
    }
    for (var, define) in [
        ("SQLITE_MAX_VARIABLE_NUMBER", "SQLITE_MAX_VARIABLE_NUMBER"),
        ("SQLITE_MAX_EXPR_DEPTH", "SQLITE_MAX_EXPR_DEPTH"),
        ("SQLITE_MAX_COLUMN", "SQLITE_MAX_COLUMN"),
    ] {
        if let Ok(v) = env::var(var) {
            cfg.flag(format!("-D{define}={v}"));
        }
    }
    for extra in extras.split_whitespace() {
        if extra.starts_with("-D") || extra.starts_with("-U") {
            cfg.flag(extra);
        } else if extra.starts_with("SQLITE_") {
            cfg.flag(format!("-D{extra}"));
        }
    }
    let name = "cluster_wal_sqlite3";
    cfg.compile(name);
    let out = env::var("OUT_DIR").unwrap_or_default();
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive={name}");
}
