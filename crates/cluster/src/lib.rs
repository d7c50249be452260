//! The cluster platform: a NATS-native toolkit for highly available services.
//!
//! This facade re-exports the runtime and types of `cluster-core` and wires implementations into
//! a [`Platform`]:
//!
//! * [`dev`]: a whole platform in one process on the in-memory network (tests, dev mode);
//! * [`nats`]: NATS/JetStream (`cluster-nats`), the production wiring.
//!
//! ```
//! # async fn demo() -> cluster::Result<()> {
//! use cluster::{App, dev};
//!
//! let network = dev::Network::new();
//! let app = App::singleton("scheduler")?;
//! app.on_active(|ctx| async move {
//!     println!("leading with fencing token {:?}", ctx.epoch);
//!     Ok(())
//! });
//! let platform = dev::platform(&network, "prod", "node-1")?.build()?;
//! platform.register(&app)?;
//! let runner = platform.clone();
//! let task = tokio::spawn(async move { runner.run().await });
//! platform.wait_started().await?;
//! platform.shutdown();
//! task.await.expect("platform task")?;
//! # Ok(())
//! # }
//! ```

pub use cluster_core::{
    AppName, Clock, Election, Epoch, Error, FencingToken, HealthStatus, Labels, Lock, LockName,
    Member, MethodName, Mode, NodeId, PlatformName, Result, Role,
};
pub use cluster_runtime::{
    App, AppKv, Audit, BoxError, BroadcastReply, DistLock, Event, EventStream, EventSubscription,
    Events, HookContext, HookKind, Next, Platform, PlatformBuilder, PlatformOptions, Request,
    RoleState, Routing, RpcClient, Stats, json_response,
};

pub mod load;
pub mod placement;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// The README's examples, compiled as doctests (they need the `sqlite` feature).
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The core crate, for the traits and wire formats.
pub use cluster_core as core;

/// The runtime crate, for everything of the platform runtime not re-exported above.
pub use cluster_runtime as runtime;

/// Dev mode: platforms on the in-memory network of `cluster-testkit`.
pub mod dev {
    use cluster_core::Result;
    use cluster_runtime::Platform;
    use cluster_runtime::PlatformBuilder;

    pub use cluster_testkit::MemoryNetwork as Network;

    /// A builder for node `node` of platform `name`, wired to `network`.
    pub fn platform(network: &Network, name: &str, node: &str) -> Result<PlatformBuilder> {
        Ok(Platform::builder(name, node)
            .transport(network.transport(node))
            .kv_store(network.kv(node))
            .audit(network.audit()))
    }
}

/// NATS/JetStream wiring.
///
/// ```no_run
/// # async fn demo() -> cluster::Result<()> {
/// let conn = cluster::nats::connect(cluster::nats::ConnectOptions::new(["nats://127.0.0.1:4222"])).await?;
/// let platform = cluster::nats::platform(&conn, "prod", "node-1", 1)?.build()?;
/// # Ok(())
/// # }
/// ```
pub mod nats {
    use std::sync::Arc;

    use cluster_core::Result;
    use cluster_runtime::PlatformBuilder;
    use cluster_runtime::{Platform, PlatformOptions};

    pub use cluster_nats::{
        AuditStreamOptions, Auth, ConnectOptions, NatsAuditLog, NatsConnection, TlsOptions,
        describe_metrics, doctor, security,
    };

    /// Opens the existing audit stream of `platform` read-only (for tools such as the CLI).
    pub async fn existing_audit(conn: &NatsConnection, platform: &str) -> Result<NatsAuditLog> {
        let platform = cluster_core::PlatformName::new(platform)?;
        NatsAuditLog::existing(conn, &platform).await
    }

    /// Opens the platform's audit stream `{P}_audit` (pass it to `PlatformBuilder::audit`).
    pub async fn audit(
        conn: &NatsConnection,
        platform: &str,
        options: AuditStreamOptions,
    ) -> Result<Arc<NatsAuditLog>> {
        let platform = cluster_core::PlatformName::new(platform)?;
        Ok(Arc::new(
            NatsAuditLog::open(conn, &platform, options).await?,
        ))
    }

    /// Connects to NATS (refusing servers older than 2.11).
    pub async fn connect(options: ConnectOptions) -> Result<NatsConnection> {
        NatsConnection::connect(options).await
    }

    /// `Platform::builder(name, node).nats(&conn, replicas)`: wires a builder to NATS.
    pub trait NatsBuilderExt {
        /// Uses `conn` for the transport and the KV store, with buckets of `replicas` replicas
        /// (also recorded in the options).
        fn nats(self, conn: &NatsConnection, replicas: usize) -> PlatformBuilder;
    }

    impl NatsBuilderExt for PlatformBuilder {
        fn nats(self, conn: &NatsConnection, replicas: usize) -> PlatformBuilder {
            self.transport(Arc::new(conn.transport()))
                .kv_store(Arc::new(conn.kv_store(Some(replicas))))
        }
    }

    /// A builder for node `node` of platform `name` over `conn`, with buckets of `replicas`
    /// replicas (1 on a single server, 3 on a cluster) and the audit stream `{P}_audit`
    /// (7 days; created on first use).
    pub fn platform(
        conn: &NatsConnection,
        name: &str,
        node: &str,
        replicas: usize,
    ) -> Result<PlatformBuilder> {
        let platform = cluster_core::PlatformName::new(name)?;
        let audit = NatsAuditLog::lazy(
            conn,
            &platform,
            AuditStreamOptions {
                replicas,
                ..AuditStreamOptions::default()
            },
        );
        Ok(Platform::builder(name, node)
            .options(PlatformOptions {
                replicas,
                ..PlatformOptions::default()
            })
            .nats(conn, replicas)
            .audit(Arc::new(audit)))
    }
}
