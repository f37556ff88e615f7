//! Egress: the only way out of a sandbox.
//!
//! Owns: the allow-list policy of an environment (`Policy`), an HTTP proxy on a Unix socket
//! that enforces it (`Proxy`, CONNECT tunnels and plain-HTTP forwarding) and adds the
//! credentials of a session's repositories to their requests (`Grant`) and its secrets in
//! place of their placeholders (`Substitution`), over HTTPS by ending the sandbox's TLS with a
//! CA of its own (`Interceptor`); and `fetch`, which
//! runs `web_fetch` from outside the sandbox under the same policy, and `search`, which runs
//! `web_search` against the operator's search backend. Must not touch: sessions,
//! models, the sandbox's internals. Every resolved address is checked when connecting
//! (`class`): loopback and link-local ones are refused whatever an environment names, and
//! private ones unless the operator opened their range (`cidr`), so a tenant cannot reach
//! agentd's own host or the networks around it.

mod cidr;
mod class;
mod fetch;
mod grant;
mod http;
mod intercept;
mod policy;
mod proxy;
mod search;
mod substitute;

pub use cidr::{BadCidr, Cidr};
pub use fetch::{FetchError, fetch};
pub use grant::Grant;
pub use intercept::{InterceptError, Interceptor, SYSTEM_BUNDLE};
pub use policy::{Denied, Policy, host_matches, refusal, unreachable_entry};
pub use proxy::{Injections, Proxy};
pub use search::search;
pub use substitute::Substitution;
