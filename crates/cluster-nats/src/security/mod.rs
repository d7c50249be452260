//! Security enforced by the NATS server (docs/SECURITY.md): the role table, its rendering as a
//! nats-server `accounts {}` block with nkey users, and the identities' seed files.

mod keys;
mod roles;
mod server_config;

pub use keys::{Credentials, Generated, generate, read_seed};
pub use roles::{Layout, Permissions, Role};
pub use server_config::{User, UserAuth, account_entry, accounts_block};
