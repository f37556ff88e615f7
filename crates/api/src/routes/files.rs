//! `/v1/files`: upload (multipart), list, metadata, download, delete.

use std::convert::Infallible;

use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};

use agentd_catalog::NewFile;
use agentd_wire::Page;
use agentd_wire::file::{DeletedFile, DeletedFileTag, FileMetadata};
use agentd_wire::ids::Kind;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Query, read_capped};
use crate::routes::page;

/// The expiry a client may ask for, seconds: an hour to ninety days.
const EXPIRY: std::ops::RangeInclusive<i64> = 3600..=7_776_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files", get(list).post(upload))
        .route("/v1/files/{id}", get(retrieve).delete(delete))
        .route("/v1/files/{id}/content", get(download))
}

async fn upload(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    req: Request,
) -> ApiResult<Json<FileMetadata>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = multer::parse_boundary(&content_type).map_err(|_| {
        ApiError::invalid("the body must be multipart/form-data with a `file` part")
    })?;
    let bytes = read_capped(req.into_body()).await?;
    let body = futures::stream::once(async move { Ok::<_, Infallible>(bytes) });
    let mut form = multer::Multipart::new(body, boundary);
    let mut file: Option<(String, Option<String>, Vec<u8>)> = None;
    let mut expires_in: Option<i64> = None;
    let bad = |e: multer::Error| ApiError::invalid(format!("malformed multipart body: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") => {
                let name = field.file_name().map(base_name).unwrap_or_default();
                let mime = field.content_type().map(ToString::to_string);
                let data = field.bytes().await.map_err(bad)?;
                file = Some((name, mime, data.to_vec()));
            }
            Some("expires_in_seconds") => {
                let text = field.text().await.map_err(bad)?;
                let n = text
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| EXPIRY.contains(n));
                expires_in = Some(n.ok_or_else(|| {
                    ApiError::invalid(format!(
                        "expires_in_seconds: {text:?} is not an integer from {} to {}",
                        EXPIRY.start(),
                        EXPIRY.end()
                    ))
                })?);
            }
            _ => {}
        }
    }
    let Some((filename, mime, content)) = file else {
        return Err(ApiError::invalid(
            "file: missing; send the file as a `file` part",
        ));
    };
    let mime_type = match mime.filter(|m| m != "application/octet-stream") {
        Some(m) => m,
        None => agentd_wire::file::mime_type_of(&filename).to_owned(),
    };
    let filename = if filename.is_empty() {
        "unnamed".to_owned()
    } else {
        filename
    };
    let expires_at = expires_in.map(|s| chrono::Utc::now() + chrono::Duration::seconds(s));
    Ok(Json(
        st.store
            .create_file(
                &ws.id,
                NewFile {
                    filename,
                    mime_type,
                    content,
                    expires_at,
                },
            )
            .await?,
    ))
}

/// Only the last path component of a client's file name is kept.
fn base_name(name: &str) -> String {
    name.rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Page<FileMetadata>>> {
    let scope_id = q.get("scope_id");
    if q.get("ids").is_some() {
        return by_ids(&st, &ws.id, scope_id, &q).await.map(Json);
    }
    let p = st
        .store
        .list_files(
            &ws.id,
            scope_id,
            q.limit_up_to(1000)?,
            q.id_page(Kind::File)?,
        )
        .await?;
    Ok(Json(page(p, |f| f)))
}

/// The most ids one `ids` filter may name.
const MAX_IDS: usize = 100;

/// `files.list(ids=[...])`: one page of the named files that exist (and, with `scope_id`,
/// belong to that scope), in list order; an id that names nothing visible is left out, as the
/// SDK documents.
async fn by_ids(
    st: &AppState,
    ws: &str,
    scope_id: Option<&str>,
    q: &Query,
) -> ApiResult<Page<FileMetadata>> {
    if q.get("page").is_some() || q.get("limit").is_some() {
        return Err(ApiError::invalid(
            "ids: cannot be combined with page or limit; the named files come as one page",
        ));
    }
    let mut ids = q.all("ids");
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_IDS {
        return Err(ApiError::invalid(format!(
            "ids: {} distinct ids is over the limit of {MAX_IDS}",
            ids.len()
        )));
    }
    let mut data = Vec::with_capacity(ids.len());
    for id in ids.iter().rev() {
        match st.store.get_file(ws, id).await {
            Ok(f) if scope_id.is_none_or(|s| f.scope.as_ref().is_some_and(|fs| fs.id == s)) => {
                data.push(f)
            }
            Ok(_) | Err(agentd_catalog::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Page {
        data,
        next_page: None,
    })
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<FileMetadata>> {
    Ok(Json(st.store.get_file(&ws.id, &id).await?))
}

async fn download(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    let (meta, bytes) = st.store.file_content(&ws.id, &id).await?;
    // The type and name are the uploader's: a browser must save the file, never sniff it
    // into something it runs (an HTML "image" rendered on agentd's origin).
    let headers = [
        (header::CONTENT_TYPE, meta.mime_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::CONTENT_DISPOSITION, attachment(&meta.filename)),
    ];
    Ok((headers, bytes).into_response())
}

/// `Content-Disposition: attachment` naming `filename` in RFC 5987 form, so no byte of the
/// name can end the header value or add a parameter.
fn attachment(filename: &str) -> String {
    let mut v = String::from("attachment; filename*=UTF-8''");
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            v.push(char::from(b));
        } else {
            v.push_str(&format!("%{b:02X}"));
        }
    }
    v
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeletedFile>> {
    st.store.delete_file(&ws.id, &id).await?;
    Ok(Json(DeletedFile {
        id,
        kind: DeletedFileTag::FileDeleted,
    }))
}
