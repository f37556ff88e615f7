//! What every HTTP provider shares: one client configuration and the way transport failures
//! are reported.

use std::time::Duration;

use crate::{Error, Result};

/// The HTTP client providers share. No overall request timeout: long generations
/// legitimately stream for many minutes; stalls are caught per chunk.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("agentd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport(&e))
}

pub(crate) fn transport(e: &reqwest::Error) -> Error {
    // reqwest's own Display hides the cause ("error sending request"), which is the useful part.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport(msg)
}

pub(crate) fn stalled(idle: Duration, what: &str) -> Error {
    Error::Transport(format!(
        "no data from upstream for {}s while waiting for {what}",
        idle.as_secs_f64()
    ))
}
