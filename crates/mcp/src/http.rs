//! rmcp's HTTP client with agentd's credential lookup in front: every request asks
//! [`McpAuth`] for the header instead of carrying one fixed when the connection was made, and a
//! 401 asks once more before giving up (a rotated token is picked up without reconnecting).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

use crate::auth::McpAuth;

type HttpError = StreamableHttpError<reqwest13::Error>;

#[derive(Clone)]
pub(crate) struct AuthedHttp {
    pub(crate) http: reqwest13::Client,
    pub(crate) auth: Arc<dyn McpAuth>,
    pub(crate) session_id: Arc<str>,
    pub(crate) url: Arc<str>,
    /// Set when a response stream broke on rmcp's event size bound. rmcp then closes the
    /// transport, and the call only sees "transport closed"; this says why.
    pub(crate) too_large: Arc<AtomicBool>,
    /// Why the credential could not be renewed after a refusal (a failed OAuth refresh):
    /// rmcp reports only "auth required", and this says what to do.
    pub(crate) auth_failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl AuthedHttp {
    pub(crate) async fn header(&self) -> Result<Option<String>, HttpError> {
        match self.auth.authorization(&self.session_id, &self.url).await {
            Ok(s) => Ok(s.map(|s| s.expose().to_owned())),
            Err(e) => Err(StreamableHttpError::UnexpectedServerResponse(
                format!("agentd could not look up the credential for this server: {e}").into(),
            )),
        }
    }
}

/// Whether the server refused the credential: a 401/403, with a challenge (which rmcp types)
/// or without one (which it reports by status).
pub(crate) fn refused(e: &HttpError) -> bool {
    match e {
        StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => true,
        StreamableHttpError::UnexpectedServerResponse(m) => {
            m.starts_with("HTTP 401") || m.starts_with("HTTP 403")
        }
        StreamableHttpError::Client(c) => c.status().is_some_and(|s| s == 401 || s == 403),
        _ => false,
    }
}

impl StreamableHttpClient for AuthedHttp {
    type Error = reqwest13::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let first = self
            .http
            .post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                self.header().await?,
                custom_headers.clone(),
                limits,
            )
            .await;
        let answer = match first {
            Err(e) if refused(&e) => {
                if let Err(e) = self.auth.refused(&self.session_id, &self.url).await {
                    *self
                        .auth_failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                    return Err(StreamableHttpError::AuthRequired(
                        rmcp::transport::streamable_http_client::AuthRequiredError::new(format!(
                            "agentd could not renew the credential for this server: {e}"
                        )),
                    ));
                }
                self.http
                    .post_message_with_response_limits(
                        uri,
                        message,
                        session_id,
                        self.header().await?,
                        custom_headers,
                        limits,
                    )
                    .await
            }
            other => other,
        };
        match answer {
            Ok(StreamableHttpPostResponse::Sse(stream, sid)) => {
                let flag = self.too_large.clone();
                let stream = stream.inspect(move |item| {
                    if let Err(e) = item
                        && format!("{e:?}").contains("TooLarge")
                    {
                        flag.store(true, Ordering::SeqCst);
                    }
                });
                Ok(StreamableHttpPostResponse::Sse(stream.boxed(), sid))
            }
            other => other,
        }
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        self.http
            .delete_session(uri, session_id, self.header().await?, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.http
            .get_stream(
                uri,
                session_id,
                last_event_id,
                self.header().await?,
                custom_headers,
            )
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                self.header().await?,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
