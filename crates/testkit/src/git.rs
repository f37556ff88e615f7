//! A git smart-HTTP server on loopback: `git http-backend` behind basic auth whose password is
//! a token, as GitHub takes one. For tests and benches of repository resources.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

struct Shared {
    root: PathBuf,
    token: String,
    backend: PathBuf,
}

/// A running server; it stops when dropped.
pub struct GitHttp {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl GitHttp {
    /// Serve the bare repositories under `root` on `bind` (e.g. `127.0.0.2:0`).
    ///
    /// # Panics
    /// When git is missing or the address cannot be bound: this is test support.
    pub async fn start(root: PathBuf, token: &str, bind: &str) -> GitHttp {
        let exec = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let dir = String::from_utf8_lossy(&exec.stdout).trim().to_owned();
        let shared = Arc::new(Shared {
            root,
            token: token.to_owned(),
            backend: PathBuf::from(dir).join("git-http-backend"),
        });
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("git server: bind");
        let addr = listener.local_addr().expect("git server: address");
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHttp { addr, server }
    }

    /// `http://<addr>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use base64::Engine;
    let Some(b64) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(plain) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let plain = String::from_utf8_lossy(&plain);
    plain.split_once(':').is_some_and(|(_, p)| p == token)
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &s.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
        )
            .into_response();
    }
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new(&s.backend);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", &s.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "git")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Some(end) = memchr_crlf2(&out.stdout) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (head, payload) = (&out.stdout[..end], out.stdout[end + 4..].to_vec());
    let mut status = StatusCode::OK;
    let mut resp = Response::builder();
    for line in String::from_utf8_lossy(head).split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else {
            resp = resp.header(k, v);
        }
    }
    resp.status(status)
        .body(axum::body::Body::from(payload))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn memchr_crlf2(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}
