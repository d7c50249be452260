//! `cluster_core::stream` on JetStream: [`NatsReplicatedLog`] (one stream per log) and
//! [`NatsObjectStore`] (a JetStream object store).

mod log;
mod object;
mod read;

use std::time::Duration;

use cluster_core::{Error, Result};

pub use log::NatsReplicatedLog;
pub use object::NatsObjectStore;

/// Default deduplication window of a log stream (the JetStream default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where a [`NatsReplicatedLog`] lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Stream name (`[A-Za-z0-9_-]`).
    pub stream: String,
    /// The single subject the stream captures and the log appends to.
    pub subject: String,
    /// Replicas of the stream (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// `Nats-Msg-Id` deduplication window; beyond it the expected-last-sequence check is what
    /// rejects a stale retry.
    pub duplicate_window: Duration,
    /// File storage (default) or memory storage.
    pub memory_storage: bool,
}

impl LogConfig {
    /// A log on stream `stream` with subject `subject`, R1, file storage, 2 min dedup window.
    pub fn new(stream: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            subject: subject.into(),
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            memory_storage: false,
        }
    }

    /// The replication log of database `db` of app `app` on platform `platform`:
    /// stream `{P}_repl_{A}_{db}`, subject `cluster.{P}.app.{A}.repl.{db}`
    /// (`docs/protocol/nats-mapping.md`). The three names follow the identifier rule.
    pub fn for_database(platform: &str, app: &str, db: &str) -> Result<Self> {
        for (what, v) in [("platform", platform), ("app", app), ("database", db)] {
            validate_identifier(what, v)?;
        }
        Ok(Self::new(
            format!("{platform}_repl_{app}_{db}"),
            format!("cluster.{platform}.app.{app}.repl.{db}"),
        ))
    }

    /// Sets the number of replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Sets the deduplication window.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.stream.is_empty()
            || !self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::InvalidArgument(format!(
                "invalid stream name {:?}",
                self.stream
            )));
        }
        if self.subject.is_empty()
            || self
                .subject
                .split('.')
                .any(|t| t.is_empty() || t == "*" || t == ">" || t.chars().any(char::is_whitespace))
        {
            return Err(Error::InvalidArgument(format!(
                "invalid log subject {:?} (literal tokens only)",
                self.subject
            )));
        }
        Ok(())
    }
}

/// Where a [`NatsObjectStore`] lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    /// Bucket name (`[A-Za-z0-9_-]`); the stream is `OBJ_<bucket>`.
    pub bucket: String,
    /// Replicas of the bucket's stream.
    pub replicas: usize,
    /// Chunk size of stored objects (default 256 KiB, below the default 1 MiB max_payload).
    pub chunk_size: usize,
}

impl ObjectStoreConfig {
    /// A bucket `bucket`, R1, 256 KiB chunks.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            replicas: 1,
            chunk_size: 256 * 1024,
        }
    }

    /// The snapshot store of database `db` of app `app` on platform `platform`: bucket
    /// `{P}_snap_{A}_{db}`.
    pub fn for_database(platform: &str, app: &str, db: &str) -> Result<Self> {
        for (what, v) in [("platform", platform), ("app", app), ("database", db)] {
            validate_identifier(what, v)?;
        }
        Ok(Self::new(format!("{platform}_snap_{app}_{db}")))
    }

    /// Sets the number of replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }
}

fn validate_identifier(what: &str, v: &str) -> Result<()> {
    let ok = (1..=63).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid {what} name {v:?}: use [a-z0-9-], 1-63 characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        let c = LogConfig::for_database("prod", "db", "main").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.stream, "prod_repl_db_main");
        assert_eq!(c.subject, "cluster.prod.app.db.repl.main");
        assert!(c.validate().is_ok());
        assert!(LogConfig::for_database("prod", "db", "a.b").is_err());
        assert!(LogConfig::new("x", "a.*").validate().is_err());
        assert_eq!(
            ObjectStoreConfig::for_database("prod", "db", "main")
                .map(|c| c.bucket)
                .ok(),
            Some("prod_snap_db_main".to_owned())
        );
    }
}
