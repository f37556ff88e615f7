//! `/v1/environments/{id}/work…`: the work queue of a `self_hosted` environment as the SDK's
//! worker speaks it. Who may call what: the worker's environment key polls, acks, lists and
//! heartbeats; the session token of a work item's `secret` heartbeats and stops its own item;
//! the operator's API key retrieves, updates and stops; stats take either key. The lease rules
//! themselves are `agentd_catalog::work`'s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use agentd_catalog::work::WorkItem;
use agentd_wire::environment::EnvironmentConfig;
use agentd_wire::work::{HeartbeatResponse, LeaseState, QueueStats, Work, WorkState};
use agentd_wire::{ErrorKind, Page};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query, parse};
use crate::routes::page;

/// A poll that names no reclaim time re-offers an item handed out but not acknowledged after
/// this long (the SDK's documented default).
const DEFAULT_RECLAIM_MS: u64 = 5000;
/// Workers seen polling within this window count in `workers_polling`.
const POLLING_WINDOW: Duration = Duration::from_secs(30);
/// Longest lease a worker may ask for.
const MAX_TTL_SECONDS: u32 = 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/environments/{env}/work", get(list))
        .route("/v1/environments/{env}/work/poll", get(poll))
        .route("/v1/environments/{env}/work/stats", get(stats))
        .route(
            "/v1/environments/{env}/work/{id}",
            get(retrieve).post(update),
        )
        .route("/v1/environments/{env}/work/{id}/ack", post(ack))
        .route(
            "/v1/environments/{env}/work/{id}/heartbeat",
            post(heartbeat),
        )
        .route("/v1/environments/{env}/work/{id}/stop", post(stop))
}

/// Which credentials an endpoint takes.
#[derive(Clone, Copy)]
struct Takes {
    api_key: bool,
    environment_key: bool,
    work_secret: bool,
}

const WORKER: Takes = Takes {
    api_key: false,
    environment_key: true,
    work_secret: false,
};

fn refused(p: &Principal, what: &str) -> ApiError {
    let who = match p {
        Principal::ApiKey(_) => "an API key",
        Principal::Environment { .. } => "an environment key",
        Principal::Work { .. } => "a work item's secret",
    };
    ApiError::new(
        ErrorKind::PermissionError,
        format!("{what} does not accept {who}"),
    )
}

/// The workspace the caller acts in, once it may call this endpoint for environment `env`,
/// which must be a `self_hosted` environment of that workspace.
async fn admit(
    st: &AppState,
    p: &Principal,
    env: &str,
    takes: Takes,
    what: &str,
) -> ApiResult<String> {
    let ws = match p {
        Principal::ApiKey(ws) if takes.api_key => ws.id.clone(),
        Principal::Environment { workspace_id, .. } if takes.environment_key => {
            workspace_id.clone()
        }
        Principal::Work { workspace_id, .. } if takes.work_secret => workspace_id.clone(),
        _ => return Err(refused(p, what)),
    };
    let e = st.store.get_environment(&ws, env).await?;
    if !matches!(e.config, EnvironmentConfig::SelfHosted {}) {
        return Err(ApiError::invalid(format!(
            "environment_id: {env} is not a self_hosted environment; only those have a work queue"
        )));
    }
    Ok(ws)
}

/// Work item `id` of environment `env` in workspace `ws`; a work secret reaches its own only.
async fn item(st: &AppState, p: &Principal, ws: &str, env: &str, id: &str) -> ApiResult<WorkItem> {
    let missing = || ApiError::not_found(format!("work {id} not found in environment {env}"));
    if let Principal::Work { work_id, .. } = p
        && work_id != id
    {
        return Err(ApiError::new(
            ErrorKind::PermissionError,
            format!("this secret belongs to work {work_id}, not {id}"),
        ));
    }
    match st.store.get_work(id).await {
        Ok(w) if w.environment_id == env && w.workspace_id == ws => Ok(w),
        Ok(_) | Err(agentd_catalog::Error::NotFound(_)) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

async fn poll(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(env): Path<String>,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<Json<Option<Work>>> {
    admit(&st, &p, &env, WORKER, "work.poll").await?;
    let block = match q.u32("block_ms")? {
        None => 0,
        Some(ms @ 1..=999) => ms,
        Some(ms) => {
            return Err(ApiError::invalid(format!(
                "block_ms: {ms} is not between 1 and 999 (omit it for a poll that does not wait)"
            )));
        }
    };
    let reclaim = q
        .u32("reclaim_older_than_ms")?
        .map_or(DEFAULT_RECLAIM_MS, u64::from);
    let reclaim = chrono::Duration::milliseconds(reclaim as i64);
    let worker = headers
        .get("anthropic-worker-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(w) = &worker
        && st.work.due(&env, w)
    {
        let now = chrono::Utc::now().timestamp_millis();
        let window = POLLING_WINDOW.as_millis() as i64;
        // A figure, not state: a poll goes on without it.
        if let Err(e) = st.store.saw_poller(&env, w, now, now - 2 * window).await {
            tracing::warn!(environment = %env, error = %e, "cannot record a polling worker");
        }
    }
    let deadline = Instant::now() + Duration::from_millis(u64::from(block));
    loop {
        let now = chrono::Utc::now();
        for candidate in st.store.live_work(Some(&env)).await? {
            if !candidate.claimable(now, reclaim) {
                continue;
            }
            let (_, hash, secret) = agentd_catalog::work::mint_secret(&candidate.id);
            let w = worker.clone();
            let (item, taken) = st
                .store
                .update_work(
                    &candidate.id,
                    Box::new(move |i| i.hand_out(now, reclaim, w.as_deref(), hash)),
                )
                .await?;
            if taken {
                return Ok(Json(Some(item.to_wire(Some(secret)))));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Json(None));
        }
        // Another process may queue the item, so the store is asked again rather than told.
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

async fn ack(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((env, id)): Path<(String, String)>,
) -> ApiResult<Json<Work>> {
    let takes = Takes {
        work_secret: true,
        ..WORKER
    };
    let ws = admit(&st, &p, &env, takes, "work.ack").await?;
    item(&st, &p, &ws, &env, &id).await?;
    let ttl = st.work.ttl_seconds;
    let claim = match &p {
        Principal::Work { claim, .. } => Some(*claim),
        _ => None,
    };
    let outcome = Arc::new(Mutex::new(None));
    let out = outcome.clone();
    let (w, _) = st
        .store
        .update_work(
            &id,
            Box::new(move |i| {
                i.ttl_seconds = ttl;
                let r = i.acknowledge(chrono::Utc::now(), claim);
                let ok = r.is_ok();
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                ok
            }),
        )
        .await?;
    match outcome.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(Err(why)) => Err(ApiError::conflict(why)),
        _ => Ok(Json(w.to_wire(None))),
    }
}

async fn heartbeat(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((env, id)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    let takes = Takes {
        work_secret: true,
        ..WORKER
    };
    let ws = admit(&st, &p, &env, takes, "work.heartbeat").await?;
    item(&st, &p, &ws, &env, &id).await?;
    let ttl = match q.u32("desired_ttl_seconds")? {
        Some(t @ 1..=MAX_TTL_SECONDS) => Some(t),
        Some(t) => {
            return Err(ApiError::invalid(format!(
                "desired_ttl_seconds: {t} is not between 1 and {MAX_TTL_SECONDS}"
            )));
        }
        None => None,
    };
    let expected = q.get("expected_last_heartbeat").map(str::to_owned);
    let claim = match &p {
        Principal::Work { claim, .. } => Some(*claim),
        _ => None,
    };
    let outcome: Arc<Mutex<Option<Result<HeartbeatResponse, LeaseState>>>> = Arc::default();
    let out = outcome.clone();
    st.store
        .update_work(
            &id,
            Box::new(move |i| {
                let r = i.heartbeat(chrono::Utc::now(), expected.as_deref(), ttl, claim);
                let changed = r.as_ref().is_ok_and(|h| h.lease_extended);
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                changed
            }),
        )
        .await?;
    let r = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
    match r {
        Some(Ok(h)) => Ok(Json(h).into_response()),
        Some(Err(lease)) => Ok(precondition_failed(&id, lease)),
        None => Err(ApiError::new(ErrorKind::ApiError, "heartbeat not applied")),
    }
}

/// The 412 the SDK's worker reads as a lost lease, with the lease as stored in its details.
fn precondition_failed(id: &str, lease: LeaseState) -> Response {
    let message = format!(
        "expected_last_heartbeat: does not match the stored heartbeat of work {id} ({}, state {}): another worker may hold its lease, or it went back to the queue",
        lease.last_heartbeat.as_deref().unwrap_or("none"),
        lease.state.as_str()
    );
    let body = json!({
        "type": "error",
        "error": {
            "type": "precondition_failed_error",
            "message": message,
            "details": {
                "error_code": "heartbeat_precondition_failed",
                "current_state": lease,
            },
        },
    });
    (StatusCode::PRECONDITION_FAILED, Json(body)).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    force: Option<bool>,
}

async fn stop(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((env, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Work>> {
    let takes = Takes {
        api_key: true,
        environment_key: true,
        work_secret: true,
    };
    let ws = admit(&st, &p, &env, takes, "work.stop").await?;
    let current = item(&st, &p, &ws, &env, &id).await?;
    let force = if body.is_empty() {
        false
    } else {
        parse::<StopBody>(&body)?.force.unwrap_or(false)
    };
    // A worker handing its item back leaves the calls it never started to the next worker.
    // A stop the operator asked for ends the calls the worker left open instead: they may have
    // partly run. They are answered before the item stops, so a crash between the two leaves
    // no call to run again.
    let ends = force || current.state == WorkState::Queued;
    let asked = matches!(p, Principal::ApiKey(_)) || current.state == WorkState::Stopping;
    let mut probe = current.clone();
    if let Err(why) = probe.request_stop(chrono::Utc::now(), force) {
        return Err(ApiError::conflict(why));
    }
    if ends && asked && current.state.is_live() {
        crate::worker_calls::close(
            &st,
            &current.session_id,
            crate::worker_calls::Closed::Stopped,
        )
        .await?;
    }
    let outcome = Arc::new(Mutex::new(None));
    let out = outcome.clone();
    let (w, _) = st
        .store
        .update_work(
            &id,
            Box::new(move |i| {
                let r = i.request_stop(chrono::Utc::now(), force);
                let ok = r.is_ok();
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                ok
            }),
        )
        .await?;
    if let Some(Err(why)) = outcome.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(ApiError::conflict(why));
    }
    if w.state == WorkState::Stopped {
        // The calls it answered above go to the model; the calls a worker handed back are
        // served by the next item, which the session's next wake queues.
        st.runner.notify(&w.session_id);
    }
    Ok(Json(w.to_wire(None)))
}

async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(env): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<Work>>> {
    admit(&st, &p, &env, WORKER, "work.list").await?;
    let pg = st
        .store
        .list_work(&env, q.limit()?, q.id_page(agentd_wire::ids::Kind::Work)?)
        .await?;
    Ok(Json(page(pg, |w| w.to_wire(None))))
}

const OPERATOR: Takes = Takes {
    api_key: true,
    environment_key: false,
    work_secret: false,
};

async fn retrieve(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((env, id)): Path<(String, String)>,
) -> ApiResult<Json<Work>> {
    let ws = admit(&st, &p, &env, OPERATOR, "work.retrieve").await?;
    Ok(Json(item(&st, &p, &ws, &env, &id).await?.to_wire(None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    metadata: BTreeMap<String, Option<String>>,
}

async fn update(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((env, id)): Path<(String, String)>,
    Body(b): Body<UpdateBody>,
) -> ApiResult<Json<Work>> {
    let ws = admit(&st, &p, &env, OPERATOR, "work.update").await?;
    item(&st, &p, &ws, &env, &id).await?;
    let patch = b.metadata;
    // Merged and checked under the item's lock: two updates racing cannot pass the limit
    // between them.
    let refused = Arc::new(Mutex::new(None));
    let out = refused.clone();
    let (w, _) = st
        .store
        .update_work(
            &id,
            Box::new(move |i| {
                let mut merged = i.metadata.clone();
                agentd_wire::agent::merge_metadata(&mut merged, patch);
                if let Err(e) = crate::limits::metadata("metadata", &merged) {
                    *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return false;
                }
                let changed = merged != i.metadata;
                i.metadata = merged;
                changed
            }),
        )
        .await?;
    if let Some(e) = refused.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    Ok(Json(w.to_wire(None)))
}

async fn stats(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(env): Path<String>,
) -> ApiResult<Json<QueueStats>> {
    let takes = Takes {
        api_key: true,
        ..WORKER
    };
    admit(&st, &p, &env, takes, "work.stats").await?;
    let now = chrono::Utc::now();
    let reclaim = chrono::Duration::milliseconds(DEFAULT_RECLAIM_MS as i64);
    let queued: Vec<WorkItem> = st
        .store
        .live_work(Some(&env))
        .await?
        .into_iter()
        .filter(|w| w.state == WorkState::Queued)
        .collect();
    let pending = queued.iter().filter(|w| w.pending(now, reclaim)).count() as u64;
    Ok(Json(QueueStats {
        kind: "work_queue_stats".into(),
        depth: queued.len() as u64 - pending,
        pending,
        oldest_queued_at: queued.iter().map(|w| w.created_at).min(),
        workers_polling: Some(
            st.store
                .pollers(
                    &env,
                    now.timestamp_millis() - POLLING_WINDOW.as_millis() as i64,
                )
                .await?,
        ),
    }))
}

/// The queue's settings, and when this process last recorded each worker polling (the
/// database counts them for every process; a worker long-polling in a loop is recorded at most
/// every few seconds, not at each poll).
#[derive(Clone)]
pub struct WorkSettings {
    /// The lease a work item gets until its worker asks for another.
    pub ttl_seconds: u32,
    recorded: Arc<Mutex<BTreeMap<(String, String), Instant>>>,
}

/// How often one worker's polling is written down.
const RECORD_EVERY: Duration = Duration::from_secs(5);

impl WorkSettings {
    pub fn new(ttl_seconds: u32) -> Self {
        WorkSettings {
            ttl_seconds,
            recorded: Arc::default(),
        }
    }

    /// Whether worker `worker`'s poll of `env` is to be recorded now.
    fn due(&self, env: &str, worker: &str) -> bool {
        let mut m = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, at| at.elapsed() < POLLING_WINDOW);
        let key = (env.to_owned(), worker.to_owned());
        if m.get(&key).is_some_and(|at| at.elapsed() < RECORD_EVERY) {
            return false;
        }
        m.insert(key, Instant::now());
        true
    }
}
