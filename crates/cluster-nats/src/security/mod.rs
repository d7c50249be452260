//! Security enforced by the NATS server (docs/SECURITY.md): the role table, its rendering as a
//! nats-server `accounts {}` block with nkey (or certificate-subject) users and the identities'
//! seed files; managed mode (operator, account, minted short-lived user JWTs).

pub mod jwt;
mod keys;
mod managed;
mod roles;
mod server_config;

pub use keys::{Credentials, Generated, generate, read_key, read_seed};
pub use managed::{Managed, generate_managed, mint};
pub use roles::{Layout, Permissions, Role};
pub use server_config::{User, UserAuth, account_entry, accounts_block};
