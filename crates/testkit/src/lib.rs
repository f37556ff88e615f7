//! A fake Anthropic Messages API on loopback, so tests and benchmarks never reach the real
//! upstream. It records what it receives and answers `POST /v1/messages` with scripted SSE
//! streams shaped like the real ones.

pub mod git;
#[cfg(feature = "world")]
pub mod world;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One scripted answer to one `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeReply {
    /// A streamed text reply, `stop_reason: end_turn`.
    Text(String),
    /// One streamed tool call, `stop_reason: tool_use`; the input JSON arrives in several
    /// `input_json_delta` pieces like the real API sends it.
    ToolUse { name: String, input: Value },
    /// A non-streamed HTTP error with this body (usually the Anthropic error JSON).
    Error { status: u16, body: String },
    /// `message_start`, then nothing until the client goes away.
    Hang,
    /// A verbatim response: status, extra headers, and body chunks sent one by one with the
    /// configured chunk delay between them.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Bytes>,
    },
}

impl FakeReply {
    pub fn text(text: impl Into<String>) -> FakeReply {
        FakeReply::Text(text.into())
    }

    pub fn tool_use(name: impl Into<String>, input: Value) -> FakeReply {
        FakeReply::ToolUse {
            name: name.into(),
            input,
        }
    }

    /// An HTTP error carrying the Anthropic error body `{"type":"error","error":{..}}`.
    pub fn error(status: u16, kind: &str, message: &str) -> FakeReply {
        let body = json!({"type": "error", "error": {"type": kind, "message": message}});
        FakeReply::Error {
            status,
            body: body.to_string(),
        }
    }

    /// A 200 SSE stream of exactly these events, one chunk per event, in order.
    pub fn sse(events: &[Value]) -> FakeReply {
        FakeReply::Raw {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: events.iter().map(sse_event).collect(),
        }
    }
}

/// Timing knobs, applied to every response served after they are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeOptions {
    /// Pause before the response headers go out (time to first byte).
    pub first_byte_delay: Duration,
    /// Pause between two SSE events (or two `Raw` chunks).
    pub chunk_delay: Duration,
    /// Characters per `text_delta`; 0 sends the whole text in one delta.
    pub text_chunk_chars: usize,
}

type ReplyFn = dyn Fn(&Value) -> FakeReply + Send + Sync;

enum Responder {
    Script(Vec<FakeReply>),
    Func(Box<ReplyFn>),
}

struct Recorded {
    headers: HeaderMap,
    body: Value,
    received: Instant,
    /// When the last byte of the response was handed to the connection.
    last_byte: Arc<Mutex<Option<Instant>>>,
}

/// When a request arrived and when its response's last byte left, for overhead benches.
#[derive(Debug, Clone)]
pub struct Timing {
    pub body: Value,
    pub received: Instant,
    pub last_byte: Option<Instant>,
}

struct Shared {
    responder: Responder,
    options: Mutex<FakeOptions>,
    requests: Mutex<Vec<Recorded>>,
    active: AtomicUsize,
}

/// A running fake server; it stops accepting connections when dropped.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAnthropic {
    /// Serve `script` in order; once it runs out the last reply repeats.
    pub async fn start(script: Vec<FakeReply>) -> FakeAnthropic {
        Self::start_with(FakeOptions::default(), script).await
    }

    pub async fn start_with(options: FakeOptions, script: Vec<FakeReply>) -> FakeAnthropic {
        Self::spawn(options, Responder::Script(script)).await
    }

    /// Answer each request with `f(request body)`.
    pub async fn start_fn<F>(f: F) -> FakeAnthropic
    where
        F: Fn(&Value) -> FakeReply + Send + Sync + 'static,
    {
        Self::start_fn_with(FakeOptions::default(), f).await
    }

    pub async fn start_fn_with<F>(options: FakeOptions, f: F) -> FakeAnthropic
    where
        F: Fn(&Value) -> FakeReply + Send + Sync + 'static,
    {
        Self::spawn(options, Responder::Func(Box::new(f))).await
    }

    /// # Panics
    /// When no loopback port can be bound; this is test support, so failing loudly is right.
    async fn spawn(options: FakeOptions, responder: Responder) -> FakeAnthropic {
        let shared = Arc::new(Shared {
            responder,
            options: Mutex::new(options),
            requests: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Anthropic: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake Anthropic: read the bound address");
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // The only error is the listener failing, after which there is nothing to serve.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        FakeAnthropic {
            addr,
            shared,
            server,
        }
    }

    /// Arrival and last-byte times of every request so far, in arrival order.
    pub fn timings(&self) -> Vec<Timing> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| Timing {
                body: r.body.clone(),
                received: r.received,
                last_byte: *lock(&r.last_byte),
            })
            .collect()
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_options(&self, options: FakeOptions) {
        *lock(&self.shared.options) = options;
    }

    /// Request bodies received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// Request headers received so far, in arrival order.
    pub fn request_headers(&self) -> Vec<HeaderMap> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| r.headers.clone())
            .collect()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Response streams still being produced; a cancelled client shows up as this dropping.
    pub fn active_streams(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Wait until no response stream is open; false if `timeout` passed first.
    pub async fn wait_no_active_streams(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active_streams() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the recorded requests from the next assertion.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(400, "invalid_request_error", &format!("bad JSON: {e}"));
        }
    };
    let received = Instant::now();
    let last_byte = Arc::new(Mutex::new(None));
    let seq = {
        let mut requests = lock(&shared.requests);
        requests.push(Recorded {
            headers,
            body: body.clone(),
            received,
            last_byte: last_byte.clone(),
        });
        requests.len() - 1
    };
    let reply = match &shared.responder {
        Responder::Script(script) => match script.get(seq).or(script.last()) {
            Some(r) => r.clone(),
            None => return error_response(500, "api_error", "the fake's script is empty"),
        },
        Responder::Func(f) => f(&body),
    };
    let options = *lock(&shared.options);
    if !options.first_byte_delay.is_zero() {
        tokio::time::sleep(options.first_byte_delay).await;
    }
    let model = body["model"].as_str().unwrap_or("fake-model").to_owned();
    let input_tokens = body.to_string().len() as u64 / 4 + 1;
    match reply {
        FakeReply::Text(text) => {
            let chunks = split_chars(&text, options.text_chunk_chars);
            let mut events = vec![message_start(seq, &model, input_tokens)];
            events.push(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}));
            events.push(json!({"type": "ping"}));
            for c in chunks {
                events.push(json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": c}}));
            }
            events.extend(finish("end_turn", text.chars().count() as u64 / 4 + 1));
            events_response(&shared, &events, options, last_byte)
        }
        FakeReply::ToolUse { name, input } => {
            let json_text = input.to_string();
            let piece = json_text.chars().count().div_ceil(3).max(1);
            let mut events = vec![message_start(seq, &model, input_tokens)];
            events.push(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": format!("toolu_fake_{seq}"),
                    "name": name, "input": {}}}));
            for c in split_chars(&json_text, piece) {
                events.push(json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": c}}));
            }
            events.extend(finish("tool_use", json_text.len() as u64 / 4 + 1));
            events_response(&shared, &events, options, last_byte)
        }
        FakeReply::Error { status, body } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status_code(status);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        FakeReply::Hang => {
            let start = sse_event(&message_start(seq, &model, input_tokens));
            stream_response(&shared, 200, vec![], vec![start], options, true, last_byte)
        }
        FakeReply::Raw {
            status,
            headers,
            chunks,
        } => stream_response(&shared, status, headers, chunks, options, false, last_byte),
    }
}

/// A well-formed Messages-API stream made of `events`.
fn events_response(
    shared: &Arc<Shared>,
    events: &[Value],
    options: FakeOptions,
    last_byte: Arc<Mutex<Option<Instant>>>,
) -> Response {
    let chunks = events.iter().map(sse_event).collect();
    stream_response(shared, 200, vec![], chunks, options, false, last_byte)
}

fn message_start(seq: usize, model: &str, input_tokens: u64) -> Value {
    json!({"type": "message_start", "message": {
        "id": format!("msg_fake_{seq}"), "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "output_tokens": 1}}})
}

fn finish(stop_reason: &str, output_tokens: u64) -> [Value; 3] {
    [
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
        json!({"type": "message_stop"}),
    ]
}

fn sse_event(data: &Value) -> Bytes {
    let name = data["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn split_chars(text: &str, size: usize) -> Vec<String> {
    if size == 0 || text.is_empty() {
        return vec![text.to_owned()];
    }
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_response(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status_code(status);
    resp
}

/// Decrements the open-stream count when the producer ends, however it ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stream_response(
    shared: &Arc<Shared>,
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Bytes>,
    options: FakeOptions,
    hang: bool,
    last_byte: Arc<Mutex<Option<Instant>>>,
) -> Response {
    shared.active.fetch_add(1, Ordering::SeqCst);
    let guard = ActiveGuard(shared.clone());
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _guard = guard;
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 && !options.chunk_delay.is_zero() {
                tokio::time::sleep(options.chunk_delay).await;
            }
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        // The channel holds at most a few chunks; once it has drained, hyper has the last.
        let _ = tx.reserve_many(tx.max_capacity()).await;
        *lock(&last_byte) = Some(Instant::now());
        if hang {
            // Resolves once hyper drops the body, i.e. when the client has gone away.
            tx.closed().await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status_code(status);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(url: &str, body: Value) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn script_in_order_then_last_repeats() {
        let fake = FakeAnthropic::start(vec![
            FakeReply::text("héllo wörld"),
            FakeReply::tool_use("get_weather", json!({"city": "Paris"})),
            FakeReply::error(529, "overloaded_error", "busy"),
        ])
        .await;
        let (s, body) = post(&fake.base_url(), json!({"model": "m", "n": 1})).await;
        assert_eq!(s, 200);
        assert!(body.contains("event: message_start\n"));
        assert!(body.contains("héllo wörld"));
        assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let (_, body) = post(&fake.base_url(), json!({"n": 2})).await;
        assert!(body.contains("\"name\":\"get_weather\""));
        assert!(body.contains("input_json_delta"));
        for _ in 0..2 {
            let (s, body) = post(&fake.base_url(), json!({})).await;
            assert_eq!(s, 529);
            assert!(body.contains("overloaded_error"));
        }
        assert_eq!(fake.request_count(), 4);
        assert_eq!(fake.requests()[0]["n"], 1);
        assert!(fake.wait_no_active_streams(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn text_chunking_and_fn_responder() {
        let fake = FakeAnthropic::start_fn_with(
            FakeOptions {
                text_chunk_chars: 2,
                ..FakeOptions::default()
            },
            |body| {
                FakeReply::text(format!(
                    "n={}",
                    body["messages"].as_array().map_or(0, Vec::len)
                ))
            },
        )
        .await;
        let (_, body) = post(&fake.base_url(), json!({"messages": [1, 2, 3]})).await;
        assert_eq!(body.matches("text_delta").count(), 2);
        assert!(body.contains("\"text\":\"n=\"") && body.contains("\"text\":\"3\""));
    }

    #[tokio::test]
    async fn hang_ends_when_client_disconnects() {
        let fake = FakeAnthropic::start(vec![FakeReply::Hang]).await;
        let mut resp = reqwest::Client::new()
            .post(format!("{}/v1/messages", fake.base_url()))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let first = resp.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"event: message_start"));
        assert_eq!(fake.active_streams(), 1);
        drop(resp);
        assert!(fake.wait_no_active_streams(Duration::from_secs(5)).await);
    }
}
