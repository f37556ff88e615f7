//! One streamed HTTP exchange with an upstream model, the same for every provider: send under
//! an idle timeout, read the body chunk by chunk through the SSE decoder, hand the frames to
//! the provider's assembler, drain the connection once the answer is complete, and turn a
//! failed status into an `Error`. A provider only builds its request and maps
//! its stream events.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::time::timeout;

use crate::sse::{Decoder, Frame};
use crate::{Delta, Error, Response, Result};

mod status;
#[cfg(test)]
mod tests;

/// How long to wait for the end of the body after the stream said it was complete; reading it
/// to the end lets the connection go back to the pool instead of paying a new TLS handshake
/// next call.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The provider's half of a stream: upstream events in, deltas and a `Response` out.
pub(crate) trait Assemble {
    /// Handles (and drains) the frames decoded so far; the response once the stream says the
    /// answer is complete.
    fn frames(
        &mut self,
        frames: &mut Vec<Frame>,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Option<Response>>;

    /// The body ended without the stream saying it was complete: the response if what
    /// arrived is one, else why not.
    fn end(self) -> Result<Response>;
}

/// The HTTP client providers share. No overall request timeout: long generations
/// legitimately stream for many minutes; stalls are caught per chunk. No redirects: reqwest
/// strips only standard credential headers when a redirect leaves the origin, so a key in
/// `x-api-key` would follow a model upstream's redirect anywhere; a 3xx is an error instead.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("agentd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport(&e))
}

/// Sends `body` as JSON asking for an event stream, and assembles the reply. `idle` is the
/// longest silence tolerated while waiting for headers or for the next chunk.
pub(crate) async fn stream(
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
    idle: Duration,
    mut assembler: impl Assemble + Send,
    on_delta: &mut (dyn FnMut(Delta) + Send),
) -> Result<Response> {
    let send = request
        .header(ACCEPT, "text/event-stream")
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send();
    let mut resp = match timeout(idle, send).await {
        Err(_) => return Err(stalled(idle, "response headers")),
        Ok(Err(e)) => return Err(transport(&e)),
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        return Err(status::error(resp, idle).await);
    }
    let mut decoder = Decoder::default();
    let mut frames = Vec::new();
    let mut started = false;
    loop {
        let chunk = match timeout(idle, resp.chunk()).await {
            Err(_) => return Err(stalled(idle, "the next stream chunk")),
            Ok(Err(e)) => return Err(transport(&e)),
            Ok(Ok(None)) => {
                decoder.finish(&mut frames)?;
                return match assembler.frames(&mut frames, on_delta)? {
                    Some(done) => Ok(done),
                    None => assembler.end(),
                };
            }
            Ok(Ok(Some(c))) => c,
        };
        if !started && !chunk.is_empty() {
            started = true;
            on_delta(Delta::Started);
        }
        decoder.feed(&chunk, &mut frames)?;
        if let Some(done) = assembler.frames(&mut frames, on_delta)? {
            // Reading to the end returns the connection to the pool, but the answer is
            // complete now; the caller must not wait on the server's last bytes.
            tokio::spawn(async move {
                let _ = timeout(DRAIN_TIMEOUT, async {
                    while let Ok(Some(_)) = resp.chunk().await {}
                })
                .await;
            });
            return Ok(done);
        }
    }
}

fn transport(e: &reqwest::Error) -> Error {
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

fn stalled(idle: Duration, what: &str) -> Error {
    Error::Transport(format!(
        "no data from upstream for {}s while waiting for {what}",
        idle.as_secs_f64()
    ))
}
