//! The Managed Agents wire format (beta `managed-agents-2026-04-01`) as serde types.
//!
//! Owns: the JSON shapes of resources, requests, events and errors exactly as the official SDK
//! spells them. Must not touch: I/O, storage, time sources or async runtimes. Every other crate
//! speaks these types at its edge, so a field renamed here is a wire break.

pub mod agent;
pub mod content;
pub mod environment;
pub mod error;
pub mod event;
pub mod file;
pub mod ids;
pub mod page;
pub mod resource;
pub mod session;
pub mod thread;
pub mod usage;
pub mod vault;
pub mod work;

pub use agent::{Agent, ModelConfig, Tool};
pub use content::ContentBlock;
pub use environment::Environment;
pub use error::{ErrorBody, ErrorKind};
pub use event::{Event, EventBody, StopReason};
pub use page::Page;
pub use session::{Session, SessionStatus};
pub use usage::Usage;

/// Timestamps on the wire are RFC 3339 in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The beta header value every Managed Agents request carries.
pub const BETA: &str = "managed-agents-2026-04-01";
