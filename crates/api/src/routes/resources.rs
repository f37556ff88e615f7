//! `/v1/sessions/{id}/resources`: add, list, retrieve, update, delete; and the `resources` of
//! a session create. A resource is stored at once and mounted when the session's sandbox is
//! next provisioned, never before the first model call; after adding or deleting one, the
//! next tool call gets a fresh sandbox that sees the change (a call running finishes first).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;

use agentd_wire::Page;
use agentd_wire::resource::{
    self, DeletedResource, FileResource, FileResourceParams, Resource, UPLOADS,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query, parse_at};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/resources", post(add).get(list))
        .route(
            "/v1/sessions/{id}/resources/{resource_id}",
            get(retrieve).post(update).delete(delete),
        )
}

/// The `resources` of a session create, each checked and given its id; `at` names the field.
pub async fn parse_all(st: &AppState, ws: &str, values: Vec<Value>) -> ApiResult<Vec<Resource>> {
    let mut out: Vec<Resource> = Vec::with_capacity(values.len());
    if values.len() > agentd_catalog::resources::MAX_PER_SESSION {
        return Err(ApiError::invalid(format!(
            "resources: at most {} per session",
            agentd_catalog::resources::MAX_PER_SESSION
        )));
    }
    for (i, v) in values.into_iter().enumerate() {
        let at = format!("resources[{i}]");
        let r = parse_one(st, ws, v, &at).await?;
        agentd_catalog::resources::check_new(&out, &r)
            .map_err(|e| ApiError::invalid(format!("{at}.{e}")))?;
        out.push(r);
    }
    Ok(out)
}

async fn parse_one(st: &AppState, ws: &str, v: Value, at: &str) -> ApiResult<Resource> {
    let Value::Object(mut o) = v else {
        return Err(ApiError::invalid(format!(
            "{at}: expected a resource object"
        )));
    };
    let kind = match o.remove("type") {
        Some(Value::String(t)) => t,
        _ => {
            return Err(ApiError::invalid(format!(
                "{at}.type: missing; expected \"file\" or \"github_repository\""
            )));
        }
    };
    match kind.as_str() {
        "file" => {
            let p: FileResourceParams = parse_at(Value::Object(o), at)?;
            file(st, ws, p, at).await
        }
        "github_repository" => Err(ApiError::invalid(format!(
            "{at}.type: github_repository resources are not supported by this agentd yet; clone the repository from a tool call instead"
        ))),
        "memory_store" => Err(ApiError::invalid(format!(
            "{at}.type: memory_store resources are not supported by this agentd yet"
        ))),
        other => Err(ApiError::invalid(format!(
            "{at}.type: {other:?} is not a resource type; expected \"file\" or \"github_repository\""
        ))),
    }
}

/// A file resource: the file must be one of the workspace's.
async fn file(st: &AppState, ws: &str, p: FileResourceParams, at: &str) -> ApiResult<Resource> {
    match st.store.get_file(ws, &p.file_id).await {
        Ok(_) => {}
        Err(agentd_catalog::Error::NotFound(_)) => {
            return Err(ApiError::not_found(format!(
                "{at}.file_id: file {} not found",
                p.file_id
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let path = p
        .mount_path
        .unwrap_or_else(|| format!("{UPLOADS}/{}", p.file_id));
    let mount_path = resource::check_mount_path(&path)
        .map_err(|why| ApiError::invalid(format!("{at}.mount_path: {why}")))?;
    let now = chrono::Utc::now();
    Ok(Resource::File(FileResource {
        id: agentd_wire::ids::new(agentd_wire::ids::Kind::SessionResource),
        file_id: p.file_id,
        mount_path,
        created_at: now,
        updated_at: now,
    }))
}

async fn add(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Resource>> {
    let s = st.store.get_session(&ws.id, &id).await?;
    if s.archived_at.is_some() {
        return Err(ApiError::conflict(format!(
            "session {id} is archived; its resources no longer change"
        )));
    }
    if let Some(t) = body.get("type").and_then(Value::as_str)
        && t != "file"
    {
        return Err(ApiError::invalid(format!(
            "type: only file resources can be added to a running session, not {t:?}"
        )));
    }
    let r = parse_one(&st, &ws.id, body, "").await.map_err(unprefixed)?;
    st.store
        .add_session_resource(&ws.id, &id, r.clone())
        .await
        .map_err(|e| match e {
            agentd_catalog::Error::Invalid(m) => ApiError::invalid(m),
            e => e.into(),
        })?;
    renew_sandbox(&st, &id).await;
    Ok(Json(r))
}

/// Errors of `parse_one` at the top level name the field without a leading dot.
fn unprefixed(mut e: ApiError) -> ApiError {
    if let Some(m) = e.message.strip_prefix('.') {
        e.message = m.to_owned();
    }
    e
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<Resource>>> {
    // Without a limit the SDK expects every resource.
    let limit = match q.get("limit") {
        None => agentd_catalog::resources::MAX_PER_SESSION,
        Some(_) => q.limit_up_to(1000)?,
    };
    let after = q.get("page").map(str::to_owned);
    let all = st.store.get_session(&ws.id, &id).await?.resources;
    let start = match &after {
        Some(p) => all
            .iter()
            .position(|r| r.id() == p)
            .map(|i| i + 1)
            .ok_or_else(|| {
                ApiError::invalid(format!("page: {p:?} is not a cursor of this list"))
            })?,
        None => 0,
    };
    let rows = all.into_iter().skip(start).take(limit + 1).collect();
    let p = agentd_catalog::Page::of(rows, limit, |r: &Resource| r.id().to_owned());
    Ok(Json(crate::routes::page(p, |r| r)))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<Resource>> {
    st.store
        .get_session(&ws.id, &id)
        .await?
        .resources
        .into_iter()
        .find(|r| r.id() == rid)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("resource {rid} not found in session {id}")))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, rid)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Resource>> {
    let Json(r) = retrieve(State(st), Extension(Caller(ws)), Path((id, rid.clone()))).await?;
    if body.get("authorization_token").is_none() {
        return Err(ApiError::invalid("authorization_token: missing"));
    }
    match r {
        Resource::File(_) => Err(ApiError::invalid(format!(
            "authorization_token: resource {rid} is a file; only github_repository resources take a token"
        ))),
    }
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<DeletedResource>> {
    if st
        .store
        .get_session(&ws.id, &id)
        .await?
        .archived_at
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "session {id} is archived; its resources no longer change"
        )));
    }
    st.store.delete_session_resource(&ws.id, &id, &rid).await?;
    renew_sandbox(&st, &id).await;
    Ok(Json(DeletedResource {
        id: rid,
        kind: "session_resource_deleted",
    }))
}

/// A sandbox keeps the mounts it was made with; the next tool call gets a fresh one over the
/// same workspace, with the session's resources as they are now. A call running goes on.
async fn renew_sandbox(st: &AppState, sid: &str) {
    if let Some(sb) = st.runner.harness().sandboxes() {
        sb.renew_session(sid).await;
    }
}
