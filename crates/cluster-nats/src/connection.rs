//! One NATS connection shared by the transport and the KV store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::connection::State;
use async_nats::{ConnectErrorKind, ServerAddr};
use cluster_core::{Error, Result};

use crate::error::describe;
use crate::kv::NatsKvStore;
use crate::options::ConnectOptions;
use crate::transport::NatsTransport;
use crate::version::check_server_version;

/// A connection to a NATS server or cluster, checked to be nats-server 2.11 or newer.
///
/// Cheap to clone (all clones share the connection). The client reconnects on its own, forever,
/// with the configured backoff; subscriptions and KV watches made through it are restored after
/// a reconnect.
#[derive(Clone, Debug)]
pub struct NatsConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    options: ConnectOptions,
    violations: Arc<AtomicU64>,
}

/// Whether a connect error's text is a TLS certificate or handshake refusal.
fn is_tls_refusal(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["certificate", "fatal alert", "handshake"]
        .iter()
        .any(|m| t.contains(m))
}

impl NatsConnection {
    /// Connects and checks the server version.
    ///
    /// Errors: `InvalidArgument` for bad options, URLs, credentials or TLS files;
    /// `Unavailable`/`Timeout` when no server can be reached; `Unsupported` when the server is
    /// older than 2.11.
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        options.validate()?;
        let addrs = options
            .servers
            .iter()
            .map(|s| {
                s.parse::<ServerAddr>()
                    .map_err(|e| Error::InvalidArgument(format!("bad NATS URL {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let violations = Arc::new(AtomicU64::new(0));
        let count = violations.clone();
        let client = options
            .to_async_nats()
            .await?
            .event_callback(move |event| {
                crate::violations::on_event(&event, &count);
                async {}
            })
            .connect(addrs)
            .await
            .map_err(|e| {
                let text = format!(
                    "cannot connect to NATS {}: {}",
                    options.servers.join(","),
                    describe(&e)
                );
                match e.kind() {
                    // rustls reports certificate and handshake refusals as IO errors: a TLS
                    // mismatch is a configuration error, not an outage to retry.
                    ConnectErrorKind::Io if is_tls_refusal(&text) => {
                        Error::InvalidArgument(format!(
                            "{text} (TLS mismatch: the server's certificate must be signed by the \
                         configured CA file, and the client certificate by the server's CA)"
                        ))
                    }
                    ConnectErrorKind::TimedOut => Error::Timeout(text),
                    ConnectErrorKind::ServerParse
                    | ConnectErrorKind::Authentication
                    | ConnectErrorKind::AuthorizationViolation
                    | ConnectErrorKind::Tls => Error::InvalidArgument(text),
                    ConnectErrorKind::Dns
                    | ConnectErrorKind::MaxReconnects
                    | ConnectErrorKind::Io => Error::Unavailable(text),
                }
            })?;
        let info = client.server_info();
        if let Err(e) = check_server_version(&info.version) {
            let _ = client.drain().await;
            return Err(e);
        }
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(options.request_timeout);
        tracing::info!(
            server = %info.server_name,
            version = %info.version,
            max_payload = info.max_payload,
            jetstream = info.jetstream,
            "connected to NATS"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                options,
                violations,
            }),
        })
    }

    /// The underlying async-nats client (for diagnostics and benchmarks).
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context used for KV.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.inner.jetstream
    }

    /// The options this connection was made with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// Permission violations the server reported on this connection so far (also counted in
    /// `gc_nats_permission_violations_total` and logged).
    pub fn permission_violations(&self) -> u64 {
        self.inner.violations.load(Ordering::Relaxed)
    }

    /// The version of the server currently connected to.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// Whether the client is connected right now.
    pub fn is_connected(&self) -> bool {
        self.inner.client.connection_state() == State::Connected
    }

    /// `Unavailable` unless connected.
    pub(crate) fn ensure_connected(client: &async_nats::Client) -> Result<()> {
        match client.connection_state() {
            State::Connected => Ok(()),
            state => Err(Error::Unavailable(format!("NATS connection is {state}"))),
        }
    }

    /// The message transport over this connection.
    pub fn transport(&self) -> NatsTransport {
        NatsTransport::new(self.inner.client.clone())
    }

    /// A KV store over this connection. `replicas`, when given, overrides
    /// `BucketConfig::replicas` for every bucket it creates (1 on a single server, 3 on a
    /// cluster), so the same bucket definitions work on both.
    pub fn kv_store(&self, replicas: Option<usize>) -> NatsKvStore {
        NatsKvStore::new(self.clone(), replicas)
    }

    /// Flushes and closes the connection; subscriptions and watches end.
    pub async fn close(&self) -> Result<()> {
        self.inner
            .client
            .drain()
            .await
            .map_err(|e| Error::Unavailable(format!("closing NATS connection: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_refusals_are_recognised() {
        assert!(super::is_tls_refusal(
            "IO error: invalid peer certificate: BadSignature"
        ));
        assert!(super::is_tls_refusal(
            "IO error: received fatal alert: CertificateRequired"
        ));
        assert!(!super::is_tls_refusal("IO error: connection refused"));
    }
}
