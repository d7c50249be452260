//! Real `nats-server` processes for integration tests, and a TCP fault proxy.
//!
//! * [`NatsServer`]: one JetStream server on random ports with a temp store directory.
//! * [`NatsCluster`]: `n` routed JetStream servers (R3 buckets need 3).
//! * [`FaultProxy`]: cut, blackhole or delay one client's connection.
//! * [`make_certs`]: a CA, a server certificate and named client certificates (openssl CLI).
//!
//! The binary is taken from `NATS_SERVER_BIN`, else `<workspace>/.tools/bin/nats-server`, else
//! `PATH`, and must be version 2.11 or newer. When it is missing the test fails with an install
//! hint ([`INSTALL_HINT`]); it never skips.
//!
//! Servers are killed and their directories removed on drop. When the test panics, the
//! directory with the server logs is kept and its path printed to stderr.

mod binary;
mod certs;
mod cluster;
mod http;
mod process;
mod proxy;
mod single;

pub use binary::{INSTALL_HINT, MIN_VERSION, nats_server_binary};
pub use certs::make_certs;
pub use cluster::NatsCluster;
pub use proxy::FaultProxy;
pub use single::{NatsServer, NatsServerOptions};
