//! Model providers: everything agentd knows about upstream model wire formats.
//!
//! Owns: the provider-neutral request/response types, the `Model` trait, the Anthropic
//! Messages API client, the OpenAI-compatible chat-completions client, the HTTP transport and
//! SSE decoder those two share, the scripted model, the registry that routes a model id to a
//! provider, and the list prices of model calls (`pricing`). Must not touch: the session log, HTTP serving, or agentd's own wire types
//! beyond usage counters. Cancelling a call is dropping its future; providers spawn nothing
//! that outlives it but a bounded read of a finished response's last bytes, which returns the
//! connection to the pool.

pub mod anthropic;
pub mod openai;
pub mod pricing;
pub mod registry;
pub mod scripted;
mod sse;
mod transport;
mod types;
mod yaml;

pub use pricing::{Price, Prices};
pub use registry::{
    ProviderConfig, ProviderKind, Registry, RegistryConfig, UnknownModel, is_file_stem,
    load_providers,
};
pub use transport::client as http_client;
pub use types::*;
