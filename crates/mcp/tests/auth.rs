//! The credential hook against a loopback MCP endpoint (hand-written JSON-RPC over axum, so the
//! test controls every status): the credential is asked for on every request, and a 401 asks
//! once more, so a rotated token is picked up without the caller noticing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentd_mcp::{AuthError, Limits, Mcp, McpAuth, Secret, Server};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Accepts only `Bearer <token>`; records every Authorization header it saw.
#[derive(Clone)]
struct Endpoint {
    token: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn handle(
    axum::extract::State(ep): axum::extract::State<Endpoint>,
    headers: HeaderMap,
    Json(msg): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    ep.seen.lock().unwrap().push(auth.clone());
    if auth != format!("Bearer {}", ep.token) {
        return (StatusCode::UNAUTHORIZED, "no").into_response();
    }
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match msg["method"].as_str() {
        Some("initialize") => json!({
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "t", "version": "1"},
        }),
        Some("tools/list") => json!({"tools": [{
            "name": "ping", "description": "Pong.",
            "inputSchema": {"type": "object", "properties": {}},
        }]}),
        Some("tools/call") => json!({"content": [{"type": "text", "text": "pong"}]}),
        _ => {
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
            )
            .into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn serve(token: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(handle))
        .with_state(Endpoint {
            token,
            seen: seen.clone(),
        });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

/// Hands out `old` once, then `new`: a token rotated between two requests.
struct Rotating {
    asked: AtomicUsize,
    sessions: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl McpAuth for Rotating {
    async fn authorization(&self, session: &str, url: &str) -> Result<Option<Secret>, AuthError> {
        self.sessions
            .lock()
            .unwrap()
            .push((session.to_owned(), url.to_owned()));
        let n = self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Secret::new(if n == 0 { "old" } else { "new" })))
    }
}

fn loopback() -> agentd_egress::Policy {
    agentd_egress::Policy::unrestricted().with_operator_ranges(&["127.0.0.1/32".parse().unwrap()])
}

#[tokio::test]
async fn every_request_asks_for_the_credential_and_a_401_asks_again_once() {
    let (url, seen) = serve("new").await;
    let auth = Arc::new(Rotating {
        asked: AtomicUsize::new(0),
        sessions: Mutex::new(Vec::new()),
    });
    let mcp = Mcp::new(auth.clone(), Limits::default());
    let server = Server {
        name: "t",
        url: &url,
    };
    let tools = mcp
        .tools("sesn_1", server, &loopback())
        .await
        .expect("listed");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "ping");
    let r = mcp
        .call(
            "sesn_1",
            server,
            &loopback(),
            "ping",
            serde_json::Map::new(),
        )
        .await
        .expect("called");
    assert_eq!(agentd_wire::ContentBlock::join_text(&r.content), "pong");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "Bearer old", "{seen:?}");
    assert!(seen[1..].iter().all(|h| h == "Bearer new"), "{seen:?}");
    // asked once per request: the refused one, its retry, and every later one
    assert_eq!(auth.asked.load(Ordering::SeqCst), seen.len());
    assert!(
        auth.sessions
            .lock()
            .unwrap()
            .iter()
            .all(|(s, u)| s == "sesn_1" && *u == url)
    );
}

#[tokio::test]
async fn a_credential_refused_twice_is_an_auth_error_and_the_server_then_rests() {
    let (url, seen) = serve("something-else").await;
    let auth = Arc::new(Rotating {
        asked: AtomicUsize::new(0),
        sessions: Mutex::new(Vec::new()),
    });
    let mcp = Mcp::new(auth, Limits::default());
    let server = Server {
        name: "t",
        url: &url,
    };
    let e = mcp
        .tools("s", server, &loopback())
        .await
        .expect_err("refused");
    assert!(matches!(e, agentd_mcp::Error::Auth { .. }), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 2, "one request and one retry");
    let again = mcp
        .tools("s", server, &loopback())
        .await
        .expect_err("resting");
    assert!(
        matches!(again, agentd_mcp::Error::Unavailable { .. }),
        "{again}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "a resting server is not asked"
    );
}
