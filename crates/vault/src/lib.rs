//! Vault secrets. Owns: the vault key (from `AGENTD_VAULT_KEY` or a key file made at first
//! start), sealing and opening each credential's secrets (ChaCha20-Poly1305, a random nonce per
//! value, the credential id as associated data), the key check value that makes a wrong key a
//! start-up error once a secret is stored, key rotation, the credential parameters of the API (whose secret parts are
//! `Secret`s and never printed), and the `Resolver` that gives the edge (MCP client, egress
//! proxy) a session's credential for a URL, refreshing OAuth tokens when due.
//!
//! Must not touch: SQL (the catalog's `Vaults` trait stores sealed bytes), HTTP routing.
//! Secrets leave this crate only as `Secret`, whose `Debug` is redacted and which has no
//! `Display`, so a log line, an error or a panic cannot carry one by accident.

mod key;
pub mod params;
mod reach;
mod resolve;
mod seal;
mod secret;

pub use key::{Key, KeyError, KeySource, bind_key, check_key, rotate};
pub use reach::Reach;
pub use resolve::{
    EnvironmentSecret, RefreshError, RefreshFailure, ResolveError, Resolved, Resolver,
};
pub use seal::{OpenError, Sealer};
pub use secret::{Secret, Secrets};
