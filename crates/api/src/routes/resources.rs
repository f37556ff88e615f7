//! `/v1/sessions/{id}/resources`: add, list, retrieve, update, delete; and the `resources` of
//! a session create. A resource is stored at once and mounted when the session's sandbox is
//! next provisioned, never before the first model call; after adding or deleting one, the
//! next tool call gets a fresh sandbox that sees the change (a call running finishes first).
//! A repository's `authorization_token` is sealed with the vault key and stored apart from the
//! resource: no response, event or log line carries it.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;

use agentd_wire::Page;
use agentd_wire::resource::{
    self, DeletedResource, FileResource, FileResourceParams, RepositoryResource,
    RepositoryResourceParams, Resource, UPLOADS,
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

/// A resource as parsed, with the token it came with (a repository's), not yet sealed.
struct Parsed {
    resource: Resource,
    token: Option<String>,
}

/// The `resources` of a session create, each checked and given its id, and the sealed tokens
/// of those that have one; `at` names the field.
pub async fn parse_all(
    st: &AppState,
    ws: &str,
    values: Vec<Value>,
) -> ApiResult<(Vec<Resource>, Vec<(String, Vec<u8>)>)> {
    let mut out: Vec<Resource> = Vec::with_capacity(values.len());
    let mut sealed = Vec::new();
    if values.len() > agentd_catalog::resources::MAX_PER_SESSION {
        return Err(ApiError::invalid(format!(
            "resources: at most {} per session",
            agentd_catalog::resources::MAX_PER_SESSION
        )));
    }
    for (i, v) in values.into_iter().enumerate() {
        let at = format!("resources[{i}]");
        let p = parse_one(st, ws, v, &at).await?;
        agentd_catalog::resources::check_new(&out, &p.resource)
            .map_err(|e| ApiError::invalid(format!("{at}.{e}")))?;
        if let Some(t) = p.token {
            sealed.push((
                p.resource.id().to_owned(),
                seal(st, p.resource.id(), &t).await?,
            ));
        }
        out.push(p.resource);
    }
    Ok((out, sealed))
}

/// `token` sealed for resource `rid` with the vault key.
async fn seal(st: &AppState, rid: &str, token: &str) -> ApiResult<Vec<u8>> {
    let sealer = crate::routes::credentials::bound_sealer(st)
        .await
        .map_err(|mut e| {
            e.message = format!("authorization_token: {}", e.message);
            e
        })?;
    Ok(sealer.seal(rid, token.as_bytes()))
}

async fn parse_one(st: &AppState, ws: &str, v: Value, at: &str) -> ApiResult<Parsed> {
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
            Ok(Parsed {
                resource: file(st, ws, p, at).await?,
                token: None,
            })
        }
        "github_repository" => {
            let p: RepositoryResourceParams = parse_at(Value::Object(o), at)?;
            repository(p, at)
        }
        "memory_store" => Err(ApiError::invalid(format!(
            "{at}.type: memory_store resources are not supported by this agentd yet"
        ))),
        other => Err(ApiError::invalid(format!(
            "{at}.type: {other:?} is not a resource type; expected \"file\" or \"github_repository\""
        ))),
    }
}

/// A repository resource: a URL agentd can clone, a place in the workspace, a checkout git
/// takes. The token is checked for shape only; the clone, at provision, tells if it works.
fn repository(p: RepositoryResourceParams, at: &str) -> ApiResult<Parsed> {
    let u = resource::check_repository_url(&p.url)
        .map_err(|why| ApiError::invalid(format!("{at}.url: {why}")))?;
    let path = p
        .mount_path
        .unwrap_or_else(|| resource::default_repository_path(&u));
    let mount_path = resource::check_repository_path(&path)
        .map_err(|why| ApiError::invalid(format!("{at}.mount_path: {why}")))?;
    let checkout = p
        .checkout
        .map(resource::Checkout::checked)
        .transpose()
        .map_err(|why| ApiError::invalid(format!("{at}.checkout: {why}")))?;
    let token = p.authorization_token.filter(|t| !t.is_empty());
    if let Some(t) = &token {
        check_token(t)
            .map_err(|why| ApiError::invalid(format!("{at}.authorization_token: {why}")))?;
    }
    let now = chrono::Utc::now();
    Ok(Parsed {
        resource: Resource::GithubRepository(RepositoryResource {
            id: agentd_wire::ids::new(agentd_wire::ids::Kind::SessionResource),
            url: p.url,
            mount_path,
            checkout,
            created_at: now,
            updated_at: now,
        }),
        token,
    })
}

/// A token goes into an HTTP header: printable, one line, not absurdly long. The message never
/// quotes it.
fn check_token(t: &str) -> Result<(), &'static str> {
    if t.len() > 4096 {
        return Err("longer than 4096 bytes");
    }
    if t.chars().any(|c| c.is_control() || c == ' ') {
        return Err("has spaces or control characters; a token is one word");
    }
    Ok(())
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
    changeable(&st, &ws.id, &id).await?;
    // As the SDK defines `resources.add`: a repository is named when the session is made.
    if let Some(t) = body.get("type").and_then(Value::as_str)
        && t != "file"
    {
        return Err(ApiError::invalid(format!(
            "type: only file resources can be added to a running session, not {t:?}; name repositories in the session's resources when it is created"
        )));
    }
    let r = parse_one(&st, &ws.id, body, "")
        .await
        .map_err(unprefixed)?
        .resource;
    st.store
        .add_session_resource(&ws.id, &id, r.clone(), None)
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
    let token = match body.get("authorization_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid("authorization_token: empty"));
        }
        Some(_) => return Err(ApiError::invalid("authorization_token: expected a string")),
        None => return Err(ApiError::invalid("authorization_token: missing")),
    };
    if let Some(k) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "authorization_token"))
    {
        return Err(ApiError::invalid(format!(
            "{k}: unknown field; only authorization_token can be updated"
        )));
    }
    check_token(&token).map_err(|why| ApiError::invalid(format!("authorization_token: {why}")))?;
    let s = changeable(&st, &ws.id, &id).await?;
    // A file has no token: said before anything is sealed.
    match s.resources.iter().find(|r| r.id() == rid) {
        None => {
            return Err(ApiError::not_found(format!(
                "resource {rid} not found in session {id}"
            )));
        }
        Some(Resource::File(_)) => {
            return Err(ApiError::invalid(format!(
                "authorization_token: resource {rid} is a file; only github_repository resources take a token"
            )));
        }
        Some(Resource::GithubRepository(_)) => {}
    }
    let sealed = seal(&st, &rid, &token).await?;
    let r = st
        .store
        .set_resource_token(&ws.id, &id, &rid, sealed)
        .await
        .map_err(|e| match e {
            agentd_catalog::Error::Invalid(m) => ApiError::invalid(m),
            e => e.into(),
        })?;
    // The proxy of a live sandbox holds the old token: the next call gets one with the new.
    renew_sandbox(&st, &id).await;
    Ok(Json(r))
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, rid)): Path<(String, String)>,
) -> ApiResult<Json<DeletedResource>> {
    changeable(&st, &ws.id, &id).await?;
    st.store.delete_session_resource(&ws.id, &id, &rid).await?;
    renew_sandbox(&st, &id).await;
    Ok(Json(DeletedResource {
        id: rid,
        kind: "session_resource_deleted",
    }))
}

/// Session `id`, if its resources may still change: not once it is archived.
async fn changeable(st: &AppState, ws: &str, id: &str) -> ApiResult<agentd_wire::Session> {
    let s = st.store.get_session(ws, id).await?;
    if s.archived_at.is_some() {
        return Err(ApiError::conflict(format!(
            "session {id} is archived; its resources no longer change"
        )));
    }
    Ok(s)
}

/// A sandbox keeps the mounts it was made with; the next tool call gets a fresh one over the
/// same workspace, with the session's resources as they are now. A call running goes on.
async fn renew_sandbox(st: &AppState, sid: &str) {
    if let Some(sb) = st.runner.harness().sandboxes() {
        sb.renew_session(sid).await;
    }
}
