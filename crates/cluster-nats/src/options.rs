//! How to reach and authenticate to NATS.

use std::path::PathBuf;
use std::time::Duration;

use cluster_core::{Error, Result};

/// Client TLS settings. Setting any of them requires TLS on the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that signed the server's certificate (in addition
    /// to the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// How the client authenticates (at most one method).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A `.creds` file (JWT + NKey seed).
    CredsFile(PathBuf),
    /// A file holding an nkey user seed (`SU…`), as written by `cluster auth gen-config`.
    NkeyFile(PathBuf),
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
}

/// Connection settings for [`crate::NatsConnection::connect`].
///
/// Defaults: connection name `cluster`, ping every 2 s (a dead or hung server is noticed after
/// about three missed pings), unlimited reconnects with exponential backoff from 10 ms to 2 s,
/// JetStream API timeout 5 s, 5 s connect timeout, discovered cluster servers used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Server URLs (`nats://host:port`, `tls://host:port`); at least one.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS settings; `None` connects in plain text unless the server requires TLS.
    pub tls: Option<TlsOptions>,
    /// Connection name shown in the server's monitoring.
    pub name: String,
    /// Interval of client PINGs; two unanswered PINGs close the connection and reconnect.
    pub ping_interval: Duration,
    /// First reconnect delay after the immediate retry.
    pub reconnect_delay_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_delay_max: Duration,
    /// Timeout of one TCP/TLS connect attempt.
    pub connect_timeout: Duration,
    /// Timeout of JetStream API calls and KV writes.
    pub request_timeout: Duration,
    /// Only use `servers`, ignoring the other cluster members the server advertises (needed to
    /// keep a client behind a fault proxy).
    pub ignore_discovered_servers: bool,
    /// Prefix of the client's reply inboxes (default `_INBOX`); each identity of a secured
    /// platform has its own (`security::Role::inbox_prefix`), the only one it may subscribe to.
    pub inbox_prefix: Option<String>,
}

impl ConnectOptions {
    /// Options for `servers` with the defaults.
    pub fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            auth: Auth::None,
            tls: None,
            name: "cluster".to_owned(),
            ping_interval: Duration::from_secs(2),
            reconnect_delay_min: Duration::from_millis(10),
            reconnect_delay_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ignore_discovered_servers: false,
            inbox_prefix: None,
        }
    }

    /// Sets the connection name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Authenticates with a `.creds` file.
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredsFile(path.into());
        self
    }

    /// Authenticates with the nkey user seed in `path`.
    pub fn nkey_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::NkeyFile(path.into());
        self
    }

    /// Uses `prefix` for reply inboxes instead of `_INBOX`.
    pub fn inbox_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.inbox_prefix = Some(prefix.into());
        self
    }

    /// Authenticates with user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::UserPassword {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Uses TLS with these settings.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the ping interval.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets the reconnect backoff bounds.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_delay_min = min;
        self.reconnect_delay_max = max;
        self
    }

    /// Sets the JetStream/KV request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Ignores servers advertised by the cluster; only `servers` are used.
    pub fn ignore_discovered_servers(mut self) -> Self {
        self.ignore_discovered_servers = true;
        self
    }

    /// Checks the options for obvious mistakes.
    pub fn validate(&self) -> Result<()> {
        if self.servers.is_empty() {
            return Err(Error::InvalidArgument(
                "no NATS server URL given".to_owned(),
            ));
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            return Err(Error::InvalidArgument(
                "TLS client certificate and key must be given together".to_owned(),
            ));
        }
        if self.reconnect_delay_min > self.reconnect_delay_max {
            return Err(Error::InvalidArgument(
                "reconnect_delay_min must not exceed reconnect_delay_max".to_owned(),
            ));
        }
        if self.ping_interval.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "ping_interval and request_timeout must be positive".to_owned(),
            ));
        }
        Ok(())
    }

    /// The reconnect delay before attempt `attempts` (1-based): 0 for the first, then
    /// doubling from `reconnect_delay_min` up to `reconnect_delay_max`.
    pub fn reconnect_delay(&self, attempts: usize) -> Duration {
        if attempts <= 1 {
            return Duration::ZERO;
        }
        let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(30);
        self.reconnect_delay_min
            .saturating_mul(1u32 << exp)
            .min(self.reconnect_delay_max)
    }

    /// Builds the async-nats options (reads the creds file).
    pub(crate) async fn to_async_nats(&self) -> Result<async_nats::ConnectOptions> {
        let mut opts = async_nats::ConnectOptions::new();
        opts = match &self.auth {
            Auth::None => opts,
            Auth::CredsFile(path) => {
                if let Ok(text) = std::fs::read_to_string(path) {
                    crate::security::jwt::check_not_expired(
                        path,
                        &text,
                        std::time::SystemTime::now(),
                    )?;
                }
                opts.credentials_file(path).await.map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot read the NATS creds file {}: {e}; check the path and that this user \
                     may read it",
                    path.display()
                ))
                })?
            }
            Auth::NkeyFile(path) => opts.nkey(crate::security::read_seed(path)?),
            Auth::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => opts.token(token.clone()),
        };
        if let Some(tls) = &self.tls {
            opts = opts.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                opts = opts.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let backoff = self.clone();
        opts = opts
            .name(&self.name)
            .ping_interval(self.ping_interval)
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.request_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| backoff.reconnect_delay(attempts));
        if self.ignore_discovered_servers {
            opts = opts.ignore_discovered_servers();
        }
        if let Some(prefix) = &self.inbox_prefix {
            opts = opts.custom_inbox_prefix(prefix);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let o = ConnectOptions::new(["nats://x:4222"])
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50));
        let delays: Vec<u128> = (1..=6).map(|a| o.reconnect_delay(a).as_millis()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 50, 50]);
        assert_eq!(o.reconnect_delay(10_000), Duration::from_millis(50));
    }

    #[test]
    fn validation() {
        assert!(
            ConnectOptions::new(Vec::<String>::new())
                .validate()
                .is_err()
        );
        let half_tls = ConnectOptions::new(["nats://x"]).tls(TlsOptions {
            client_cert: Some("c.pem".into()),
            ..TlsOptions::default()
        });
        assert!(half_tls.validate().is_err());
        assert!(ConnectOptions::new(["nats://x"]).validate().is_ok());
    }
}
