//! Egress: the only way out of a sandbox.
//!
//! Owns: the allow-list policy of an environment (`Policy`), an HTTP proxy on a Unix socket
//! that enforces it (`Proxy`, CONNECT tunnels and plain-HTTP forwarding), and `fetch`, which
//! runs `web_fetch` from outside the sandbox under the same policy, and `search`, which runs
//! `web_search` against the operator's search backend. Must not touch: sessions,
//! models, the sandbox's internals. Private, loopback and link-local addresses are refused
//! unless the host is named exactly, so a sandbox cannot reach services on agentd's own host.

mod fetch;
mod policy;
mod proxy;
mod search;

pub use fetch::{FetchError, fetch};
pub use policy::{Denied, Policy};
pub use proxy::Proxy;
pub use search::search;
