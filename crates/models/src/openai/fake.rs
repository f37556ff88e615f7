//! A fake chat-completions server on loopback for the client's tests: scripted replies,
//! recorded requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response as HttpResponse;
use axum::routing::post;
use serde_json::Value;

/// One scripted answer: status, headers and body chunks sent one by one, or a stream that
/// never ends.
#[derive(Clone)]
pub(super) enum Reply {
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        chunks: Vec<Vec<u8>>,
    },
    Hang,
}

struct Shared {
    script: Vec<Reply>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

pub(super) struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Fake {
    /// Serves `script` in order; once it runs out the last reply repeats.
    pub(super) async fn start(script: Vec<Reply>) -> Fake {
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::default(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake {
            addr,
            shared,
            server,
        }
    }

    pub(super) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub(super) fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.shared.requests.lock().unwrap().clone()
    }
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let seq = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push((headers, body));
        requests.len() - 1
    };
    let reply = shared.script.get(seq).or(shared.script.last()).unwrap();
    let (status, headers, chunks, hang) = match reply.clone() {
        Reply::Raw {
            status,
            headers,
            chunks,
        } => (status, headers, chunks, false),
        Reply::Hang => (200, vec![], vec![b": hello\n\n".to_vec()], true),
    };
    let items = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c))),
    );
    let body = if hang {
        Body::from_stream(futures::StreamExt::chain(items, futures::stream::pending()))
    } else {
        Body::from_stream(items)
    };
    let mut resp = HttpResponse::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    for (k, v) in headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

/// A 200 SSE stream of these chunks, then `[DONE]` if asked, one HTTP chunk per event.
pub(super) fn sse(chunks: &[Value], done: bool) -> Reply {
    let mut events: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| format!("data: {c}\n\n").into_bytes())
        .collect();
    if done {
        events.push(b"data: [DONE]\n\n".to_vec());
    }
    Reply::Raw {
        status: 200,
        headers: vec![],
        chunks: events,
    }
}

/// The same stream cut into `size`-byte pieces, splitting lines and characters anywhere.
pub(super) fn sse_in_pieces(chunks: &[Value], size: usize) -> Reply {
    let Reply::Raw { chunks: events, .. } = sse(chunks, true) else {
        unreachable!()
    };
    Reply::Raw {
        status: 200,
        headers: vec![],
        chunks: events.concat().chunks(size).map(<[u8]>::to_vec).collect(),
    }
}

pub(super) fn raw(status: u16, headers: Vec<(&'static str, String)>, body: &str) -> Reply {
    Reply::Raw {
        status,
        headers,
        chunks: vec![body.as_bytes().to_vec()],
    }
}
