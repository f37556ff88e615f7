//! API keys (`x-api-key` or `Authorization: Bearer`), per-key rate limits, and the throttle
//! on failed attempts (`failures`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use agentd_catalog::Workspace;
use agentd_wire::ErrorKind;

use crate::failures::Failures;
use crate::{AppState, error::ApiError};

/// Requests per second each key may make, with bursts up to `burst`. Zero disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 100.0,
            burst: 200.0,
        }
    }
}

type KeyHash = [u8; 32];

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Known keys by hash, so a request costs no database read after the first; and one token
/// bucket per key. Keys are never deleted, so a cached key cannot outlive its row.
#[derive(Clone)]
pub(crate) struct KeyCache {
    inner: Arc<Mutex<HashMap<KeyHash, (Workspace, Bucket)>>>,
    rate: RateLimit,
    failures: Failures,
}

impl KeyCache {
    pub fn new(rate: RateLimit) -> Self {
        KeyCache {
            inner: Arc::default(),
            rate,
            failures: Failures::default(),
        }
    }

    /// Take one token from the key's bucket; false when it is empty.
    fn admit(&self, hash: &[u8; 32]) -> Option<(Workspace, bool)> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (ws, b) = map.get_mut(hash)?;
        if self.rate.per_second <= 0.0 {
            return Some((ws.clone(), true));
        }
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate.per_second)
            .min(self.rate.burst);
        b.at = now;
        let ok = b.tokens >= 1.0;
        if ok {
            b.tokens -= 1.0;
        }
        Some((ws.clone(), ok))
    }

    fn insert(&self, hash: [u8; 32], ws: Workspace) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(hash).or_insert((
            ws,
            Bucket {
                tokens: self.rate.burst,
                at: Instant::now(),
            },
        ));
    }
}

/// The caller's workspace, set by `authenticate` for every handler behind it.
#[derive(Debug, Clone)]
pub struct Caller(pub Workspace);

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Without connection info (in-process callers) every client shares one address.
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let Some(key) = presented_key(req.headers()) else {
        return refuse(
            &state,
            ip,
            "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>",
        );
    };
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if agentd_catalog::work::is_environment_key(&key)
        || agentd_catalog::work::token_work_id(&key).is_some()
    {
        // Worker credentials are looked up every time (a key can be revoked, a claim go
        // stale): an address guessing them is throttled like one guessing API keys.
        if let Some(secs) = state.keys.failures.retry_after(ip) {
            return too_many(
                format!("too many failed authentications from {ip}; retry in {secs} s"),
                secs,
            );
        }
        return match worker_principal(&state, &key).await {
            Ok(Some(p)) => match scoped(&p, req.method(), req.uri().path()) {
                Ok(caller) => {
                    if let Err(e) = env_key_session(&state, &p, req.uri().path()).await {
                        return e.into_response();
                    }
                    if let Some(c) = caller {
                        req.extensions_mut().insert(c);
                    }
                    req.extensions_mut().insert(p);
                    req.extensions_mut().insert(crate::KeyId(hash));
                    next.run(req).await
                }
                Err(e) => e.into_response(),
            },
            Ok(None) => refuse(
                &state,
                ip,
                "invalid credential: no such environment key (or it was revoked), and no such work item secret",
            ),
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let admitted = match state.keys.admit(&hash) {
        Some(a) => a,
        None => {
            if let Some(secs) = state.keys.failures.retry_after(ip) {
                return too_many(
                    format!("too many failed authentications from {ip}; retry in {secs} s"),
                    secs,
                );
            }
            match state.store.authenticate(&key).await {
                Ok(Some(ws)) => {
                    state.keys.insert(hash, ws);
                    match state.keys.admit(&hash) {
                        Some(a) => a,
                        None => {
                            return ApiError::new(ErrorKind::ApiError, "key cache failure")
                                .into_response();
                        }
                    }
                }
                Ok(None) => {
                    return refuse(
                        &state,
                        ip,
                        "invalid API key: it is not registered with this agentd (create one with `agentd keys create`)",
                    );
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    let (ws, ok) = admitted;
    if !ok {
        return too_many(
            format!(
                "rate limit of {} requests per second for this API key exceeded; retry after a short pause",
                state.keys.rate.per_second
            ),
            1,
        );
    }
    req.extensions_mut().insert(Principal::ApiKey(ws.clone()));
    req.extensions_mut().insert(Caller(ws));
    req.extensions_mut().insert(crate::KeyId(hash));
    next.run(req).await
}

/// Who a request acts for: the operator (an API key), a worker of one environment (its
/// environment key), or the worker holding one claim of a work item (the session token of
/// the item's `secret`, good for that item's session only).
#[derive(Debug, Clone)]
pub enum Principal {
    ApiKey(Workspace),
    Environment {
        workspace_id: String,
        environment_id: String,
    },
    Work {
        workspace_id: String,
        environment_id: String,
        work_id: String,
        session_id: String,
        claim: u32,
    },
}

/// An environment key's or a work secret's principal, if the credential is known. Neither is
/// cached: a key can be revoked and a claim can go stale at any time.
async fn worker_principal(
    state: &AppState,
    key: &str,
) -> Result<Option<Principal>, agentd_catalog::Error> {
    if let Some(work_id) = agentd_catalog::work::token_work_id(key) {
        let item = match state.store.get_work(work_id).await {
            Ok(i) => i,
            Err(agentd_catalog::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        // A stopped item's secrets serve nothing: its worker has no more business with the
        // session, and a leaked one must not outlive the work it was for.
        if !item.state.is_live() {
            return Ok(None);
        }
        return Ok(item.claim_of(key).map(|claim| Principal::Work {
            workspace_id: item.workspace_id.clone(),
            environment_id: item.environment_id.clone(),
            work_id: item.id.clone(),
            session_id: item.session_id.clone(),
            claim,
        }));
    }
    Ok(state
        .store
        .authenticate_environment_key(key)
        .await?
        .map(|o| Principal::Environment {
            workspace_id: o.workspace_id,
            environment_id: o.environment_id,
        }))
}

/// What a worker's credential may reach: its environment's work endpoints, and (a work
/// secret) what the SDK's worker does with its session: retrieve it, list, stream and send its
/// events. Never an update or a delete: the log is the session's only state. A session path
/// gets the `Caller` the session handlers read.
fn scoped(
    p: &Principal,
    method: &axum::http::Method,
    path: &str,
) -> Result<Option<Caller>, ApiError> {
    use axum::http::Method;
    let (ws, env, session) = match p {
        Principal::ApiKey(_) => return Ok(None),
        Principal::Environment {
            workspace_id,
            environment_id,
        } => (
            workspace_id,
            environment_id,
            // The SDK's worker falls back to the environment key for an item's session calls
            // when it has no secret; `authenticate` checks the session is one of the key's.
            session_of(path),
        ),
        Principal::Work {
            workspace_id,
            environment_id,
            session_id,
            ..
        } => (workspace_id, environment_id, Some(session_id.as_str())),
    };
    if path.starts_with(&format!("/v1/environments/{env}/work")) {
        return Ok(None);
    }
    if let Some(sid) = session {
        let base = format!("/v1/sessions/{sid}");
        let allowed = match path.strip_prefix(base.as_str()) {
            Some("" | "/events/stream") => method == Method::GET,
            Some("/events") => method == Method::GET || method == Method::POST,
            _ => false,
        };
        if allowed {
            return Ok(Some(Caller(Workspace {
                id: ws.clone(),
                name: String::new(),
            })));
        }
        return Err(ApiError::new(
            ErrorKind::PermissionError,
            format!(
                "a worker's credential only serves the work endpoints of environment {env} and reading session {sid} and its events, and sending them; use an API key for {method} {path}"
            ),
        ));
    }
    Err(ApiError::new(
        ErrorKind::PermissionError,
        format!(
            "an environment key only serves the work endpoints of environment {env}; use an API key for {path}"
        ),
    ))
}

/// The session a `/v1/sessions/{id}...` path names.
fn session_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/sessions/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// An environment key serves a session's endpoints only while its environment has live work
/// for the session.
async fn env_key_session(state: &AppState, p: &Principal, path: &str) -> Result<(), ApiError> {
    let (Principal::Environment { environment_id, .. }, Some(sid)) = (p, session_of(path)) else {
        return Ok(());
    };
    if crate::worker_calls::live_item(state, sid, environment_id)
        .await?
        .is_some()
    {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::PermissionError,
        format!(
            "an environment key serves only the sessions its environment has live work for; session {sid} has none in {environment_id}"
        ),
    ))
}

fn presented_key(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// A 401, counted against the client's address.
fn refuse(state: &AppState, ip: IpAddr, why: &str) -> Response {
    state.keys.failures.record(ip);
    ApiError::new(ErrorKind::AuthenticationError, why).into_response()
}

fn too_many(why: String, retry_after_secs: u64) -> Response {
    let mut r = ApiError::new(ErrorKind::RateLimitError, why).into_response();
    r.headers_mut().insert(
        "retry-after",
        axum::http::HeaderValue::from(retry_after_secs),
    );
    r
}
