//! Virtual IP failover: the active instance of an app holds an IPv4 address on an interface.
//!
//! [`VipResource`] implements [`ActiveResource`](cluster_core::ActiveResource): the
//! runtime claims it with the term's fencing token before `on_active` and releases it after
//! `on_passive`. Addresses are managed over rtnetlink; gratuitous ARP is sent from a raw
//! `AF_PACKET` socket (no `arping` at runtime). Needs `CAP_NET_ADMIN` and `CAP_NET_RAW`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cluster_core::RetryPolicy;
//! use cluster_runtime::App;
//! use cluster_vip::{Vip, VipResource};
//!
//! let app = App::singleton("db")?;
//! let vip = Vip::new("198.51.100.100/24", "eth0")?;
//! app.add_resource(Arc::new(VipResource::new(vip)?), RetryPolicy::default());
//! # Ok(()) }
//! ```
//!
//! Design, fencing rule and required capabilities: `docs/architecture/cluster-vip.md`.

mod arp;
mod caps;
mod config;
mod error;
mod fence;
mod netlink;
mod packet;
mod resource;
mod watchdog;
mod worker;

pub use arp::Mac;
pub use config::{Cidr, ClaimCheck, GarpForm, Vip};
pub use error::VipError;
pub use resource::VipResource;
pub use worker::VipStatus;
