//! Request parsing with errors that say which field is wrong and why.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use agentd_wire::Timestamp;
use agentd_wire::page::{DEFAULT_LIMIT, MAX_LIMIT};

use crate::error::ApiError;

/// A JSON body. Malformed JSON and schema violations are 400s naming the path; a body over
/// the limit is a 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_capped(req.into_body()).await?;
        parse(&bytes).map(Body)
    }
}

/// Read a body of at most `MAX_BODY_BYTES`. An oversize body is still read (and dropped) up
/// to a bound before the 413 goes out: a client still writing when the server hangs up sees a
/// reset connection instead of the error.
pub(crate) async fn read_capped(body: axum::body::Body) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
        seen += chunk.len();
        if seen <= crate::MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if seen > 4 * crate::MAX_BODY_BYTES {
            break;
        }
    }
    if seen > crate::MAX_BODY_BYTES {
        return Err(ApiError::new(
            agentd_wire::ErrorKind::RequestTooLarge,
            format!("request body exceeds {} bytes", crate::MAX_BODY_BYTES),
        ));
    }
    Ok(buf)
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "request body is empty; expected a JSON object",
        ));
    }
    // serde reads a struct from an array of its fields in order; no request body is an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid(
            "invalid request body: expected a JSON object, found an array",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("malformed JSON: {inner}"))
        } else if path == "." {
            ApiError::invalid(format!("invalid request body: {inner}"))
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Deserialize `value` found at `at` in the request, naming the full path of what is wrong.
/// Used where serde's internally tagged enums would lose the path below the tag.
pub fn parse_at<T: DeserializeOwned>(value: serde_json::Value, at: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match (at.is_empty(), path == ".") {
            (true, true) => ApiError::invalid(format!("invalid request body: {inner}")),
            (true, false) => ApiError::invalid(format!("{path}: {inner}")),
            (false, true) => ApiError::invalid(format!("{at}: {inner}")),
            (false, false) => ApiError::invalid(format!("{at}.{path}: {inner}")),
        }
    })
}

/// Query parameters; lists accept both `k=a&k=b` and the SDK's `k[]=a&k[]=b`.
pub struct Query(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        Ok(Query(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.trim_end_matches("[]").to_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl Query {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(str::to_owned))
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        self.limit_up_to(MAX_LIMIT)
    }

    pub fn limit_up_to(&self, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT.min(max)),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid(format!(
                    "limit: {v:?} is not an integer between 1 and {max}"
                ))),
            },
        }
    }

    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::invalid(format!(
                "{name}: {v:?} is not true or false"
            ))),
        }
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid(format!("{name}: {v:?} is not a positive integer"))
                })
            })
            .transpose()
    }

    pub fn time(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.get(name)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        ApiError::invalid(format!(
                            "{name}: {v:?} is not an RFC 3339 date-time such as 2026-01-31T12:00:00Z"
                        ))
                    })
            })
            .transpose()
    }

    pub fn order(&self) -> Result<agentd_catalog::Order, ApiError> {
        match self.get("order") {
            None | Some("desc") => Ok(agentd_catalog::Order::Desc),
            Some("asc") => Ok(agentd_catalog::Order::Asc),
            Some(v) => Err(ApiError::invalid(format!(
                "order: {v:?} is not asc or desc"
            ))),
        }
    }

    pub fn page(&self) -> Option<String> {
        self.get("page")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
    }

    /// `page` on an endpoint whose cursor is the id of the last item it returned: anything
    /// else is refused, as the position-cursor endpoints refuse a stranger, rather than
    /// silently giving an empty or a whole list.
    pub fn id_page(&self, kind: agentd_wire::ids::Kind) -> Result<Option<String>, ApiError> {
        let page = self.page();
        match &page {
            Some(p) if !p.starts_with(kind.prefix()) => Err(ApiError::invalid(format!(
                "page: {p:?} is not a cursor this endpoint returned"
            ))),
            _ => Ok(page),
        }
    }
}
