//! Why an MCP listing or call failed; each text is what the model (or the user) reads.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the MCP server {server:?} ({url}) may not be reached: {why}")]
    Blocked {
        server: String,
        url: String,
        why: String,
    },
    #[error("could not reach the MCP server {server:?} ({url}): {why}")]
    Connect {
        server: String,
        url: String,
        why: String,
    },
    #[error("the MCP server {server:?} refused agentd's credentials (HTTP 401/403): {why}")]
    Auth { server: String, why: String },
    #[error("the MCP server {server:?} did not answer within {secs} s; the call was abandoned")]
    Timeout { server: String, secs: u64 },
    #[error("the MCP server {server:?} sent a response agentd cannot read: {why}")]
    Protocol { server: String, why: String },
    #[error(
        "the MCP server {server:?} returned a result of {bytes} bytes or more, over agentd's cap of {cap} bytes; ask for less (a narrower query, a page)"
    )]
    TooLarge {
        server: String,
        bytes: usize,
        cap: usize,
    },
    #[error("the MCP server {server:?} is not tried again for {secs} s after it failed: {last}")]
    Unavailable {
        server: String,
        secs: u64,
        last: Box<Error>,
    },
    #[error("the MCP server {server:?} answered with an error: {why}")]
    Server { server: String, why: String },
}
