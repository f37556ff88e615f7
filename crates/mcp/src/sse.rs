//! The older MCP transport, HTTP+SSE (protocol 2024-11-05), for servers that offer only it: a
//! GET opens an event stream whose first `endpoint` event names where to POST messages, and the
//! answers come back as `message` events on that stream. Every request carries the credential
//! [`McpAuth`](crate::McpAuth) gives for the server, as on the streamable transport; the POST
//! endpoint must be on the server's own origin, so the credential goes nowhere else.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;

use crate::http::AuthedHttp;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SseError(pub(crate) String);

pub(crate) struct LegacySse {
    http: AuthedHttp,
    post: Arc<str>,
    events: BoxStream<'static, ServerJsonRpcMessage>,
}

/// `url` and `endpoint` (absolute, or a path on `url`'s origin) joined, if on the same origin.
fn same_origin(url: &str, endpoint: &str) -> Option<String> {
    let origin_end = url.find("://").map(|i| i + 3)?;
    let origin = match url[origin_end..].find('/') {
        Some(j) => &url[..origin_end + j],
        None => url,
    };
    if endpoint.starts_with('/') && !endpoint.starts_with("//") {
        return Some(format!("{origin}{endpoint}"));
    }
    let rest = endpoint.strip_prefix(origin)?;
    (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| endpoint.to_owned())
}

/// Where the last event of `buf` ended (after its blank line: `\n\n`, `\r\r` or
/// `\r\n\r\n`), if one did.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
        .iter()
        .filter_map(|sep| memchr::memmem::rfind(buf, sep).map(|i| i + sep.len()))
        .max()
}

/// The byte stream, ended with an error once one event grows past `bound` bytes (the server
/// sent no blank line in that many), so a runaway event cannot fill memory.
fn bounded<S>(
    bytes: S,
    bound: usize,
    too_large: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>>
where
    S: futures::Stream<Item = Result<bytes::Bytes, reqwest13::Error>>,
{
    // The last bytes of the previous chunk: a blank line may be split between two chunks.
    let mut tail: Vec<u8> = Vec::new();
    let mut since_blank = 0usize;
    bytes.map_err(std::io::Error::other).and_then(move |chunk| {
        let mut joined = std::mem::take(&mut tail);
        joined.extend_from_slice(&chunk);
        since_blank = match last_event_end(&joined) {
            Some(end) => joined.len() - end,
            None => since_blank + chunk.len(),
        };
        let keep = joined.len().min(3);
        tail = joined[joined.len() - keep..].to_vec();
        let over = since_blank > bound;
        if over {
            too_large.store(true, Ordering::Relaxed);
        }
        futures::future::ready(if over {
            Err(std::io::Error::other("an event over the size bound"))
        } else {
            Ok(chunk)
        })
    })
}

impl LegacySse {
    /// Open the event stream at `url` and wait for its `endpoint` event.
    pub(crate) async fn open(
        http: AuthedHttp,
        url: &str,
        bound: usize,
    ) -> Result<LegacySse, String> {
        let mut req = http
            .http
            .get(url)
            .header(reqwest13::header::ACCEPT, "text/event-stream");
        if let Some(h) = http.header().await.map_err(|e| e.to_string())? {
            req = req.bearer_auth(h);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {} opening the SSE stream", status.as_u16()));
        }
        let is_sse = resp
            .headers()
            .get(reqwest13::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err("the server speaks neither streamable HTTP nor SSE".into());
        }
        let bytes = bounded(resp.bytes_stream(), bound, http.too_large.clone());
        let mut sse = sse_stream::SseStream::from_bytes_stream(bytes);
        let post = loop {
            match sse.next().await {
                Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                    let data = ev.data.unwrap_or_default();
                    let data = data.trim();
                    break same_origin(url, data).ok_or_else(|| {
                        format!("the SSE endpoint {data:?} is not on the server's origin")
                    })?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("the SSE stream broke: {e}")),
                None => return Err("the SSE stream ended before naming its endpoint".into()),
            }
        };
        let events = sse
            .take_while(|ev| futures::future::ready(ev.is_ok()))
            .filter_map(|ev| async move {
                let ev = ev.ok()?;
                if ev.event.as_deref().is_some_and(|e| e != "message") {
                    return None;
                }
                // A message that is not JSON-RPC is dropped: the call waiting for it times out
                // with an error the model reads.
                serde_json::from_str(ev.data.as_deref()?).ok()
            })
            .boxed();
        Ok(LegacySse {
            http,
            post: post.into(),
            events,
        })
    }
}

impl Transport<RoleClient> for LegacySse {
    type Error = SseError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let (http, post) = (self.http.clone(), self.post.clone());
        async move {
            let mut req = http.http.post(&*post).json(&item);
            if let Some(h) = http.header().await.map_err(|e| SseError(e.to_string()))? {
                req = req.bearer_auth(h);
            }
            let resp = req.send().await.map_err(|e| SseError(e.to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(SseError(format!("HTTP {}", resp.status().as_u16())))
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.events.next()
    }

    async fn close(&mut self) -> Result<(), SseError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{last_event_end, same_origin};

    #[test]
    fn an_event_ends_at_a_blank_line_of_any_kind() {
        assert_eq!(last_event_end(b"data: a\r\n\r\ndata: b"), Some(11));
        assert_eq!(last_event_end(b"data: a\n\n"), Some(9));
        assert_eq!(last_event_end(b"\r\r"), Some(2));
        assert_eq!(last_event_end(b"data: a\r\n"), None);
    }

    #[test]
    fn the_post_endpoint_must_be_on_the_server_s_origin() {
        let u = "http://127.0.0.1:8000/sse";
        assert_eq!(
            same_origin(u, "/messages/?session_id=a").as_deref(),
            Some("http://127.0.0.1:8000/messages/?session_id=a")
        );
        assert_eq!(
            same_origin(u, "http://127.0.0.1:8000/m").as_deref(),
            Some("http://127.0.0.1:8000/m")
        );
        for bad in [
            "//evil.example/m",
            "http://evil.example/m",
            "http://127.0.0.1:8000.evil/m",
            "m",
        ] {
            assert_eq!(same_origin(u, bad), None, "{bad}");
        }
    }
}
