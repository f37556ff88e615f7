//! A failed HTTP status as an [`Error`]: which statuses are worth a retry and after how long,
//! and the message out of whichever error body shape the upstream uses.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use tokio::time::timeout;

use crate::Error;

/// Error bodies are read up to this size; a longer one is a page of HTML, not a message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Characters of an error body quoted in the error message.
const MAX_QUOTED: usize = 500;

/// Reads what there is of the error body (each chunk under the idle timeout) and maps it.
pub(super) async fn error(mut resp: reqwest::Response, idle: Duration) -> Error {
    let status = resp.status();
    let retry_after = retry_after(resp.headers(), SystemTime::now());
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    classify(status, retry_after, &body)
}

fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Error {
    let message = message(body, status);
    let code = status.as_u16();
    match code {
        429 => Error::RateLimited {
            message,
            retry_after,
        },
        // 529 is Anthropic's overload; 503 is everyone else's (and what proxies in front of
        // Anthropic answer), and both mean the same thing: wait and try again.
        503 | 529 => Error::Overloaded {
            message,
            retry_after,
        },
        500..=599 => Error::Server {
            status: code,
            message,
        },
        400..=499 => Error::Rejected {
            status: code,
            message,
        },
        _ => Error::Protocol(format!("unexpected HTTP {code}: {message}")),
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (a date in the past means now).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The message of an error body in the shapes upstreams use: Anthropic, OpenAI and vLLM
/// `{"error":{"message"}}`, Ollama `{"error":"..."}`, FastAPI `{"detail":...}`, a bare
/// `{"message"}`, or Anthropic's `{"error":{"type"}}` with no message; otherwise the body
/// itself. Shortened either way, since it ends up in the session log.
fn message(body: &[u8], status: StatusCode) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let found = [
        &v["error"]["message"],
        &v["error"],
        &v["detail"],
        &v["message"],
        &v["error"]["type"],
    ]
    .into_iter()
    .find_map(|m| match m {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(_) => Some(m.to_string()),
        _ => None,
    });
    let text = match found {
        Some(m) => m,
        None => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no error body")
            .to_owned();
    }
    text.chars().take(MAX_QUOTED).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn statuses_map_to_errors() {
        let wait = Some(Duration::from_secs(3));
        let overloaded = |message: &str| Error::Overloaded {
            message: message.into(),
            retry_after: wait,
        };
        assert_eq!(
            classify(status(503), wait, b""),
            overloaded("Service Unavailable")
        );
        assert_eq!(classify(status(529), wait, b"busy"), overloaded("busy"));
        assert_eq!(
            classify(status(429), wait, b"slow"),
            Error::RateLimited {
                message: "slow".into(),
                retry_after: wait
            }
        );
        assert_eq!(
            classify(status(502), wait, b"bad gateway"),
            Error::Server {
                status: 502,
                message: "bad gateway".into()
            }
        );
        assert_eq!(
            classify(status(413), None, b"too big"),
            Error::Rejected {
                status: 413,
                message: "too big".into()
            }
        );
        assert!(matches!(
            classify(status(302), None, b""),
            Error::Protocol(m) if m.starts_with("unexpected HTTP 302")
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs: u64| httpdate::fmt_http_date(now + Duration::from_secs(secs));
        let parse = |v: &str| retry_after(&headers(v), now);
        assert_eq!(parse("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse(&at(30)), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after(&headers(&at(0)), now + Duration::from_secs(60)),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn messages_come_out_of_every_body_shape() {
        let msg = |body: &str| message(body.as_bytes(), status(400));
        let anthropic = r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}}"#;
        assert_eq!(msg(anthropic), "max_tokens: too big");
        assert_eq!(
            msg(r#"{"error": {"type": "overloaded_error", "message": ""}}"#),
            "overloaded_error"
        );
        assert_eq!(
            msg(r#"{"error": "model \"x\" not found"}"#),
            "model \"x\" not found"
        );
        assert_eq!(
            msg(r#"{"detail": [{"msg": "field required"}]}"#),
            r#"[{"msg":"field required"}]"#
        );
        assert_eq!(msg(r#"{"message": "nope"}"#), "nope");
        assert_eq!(msg("  plain text \n"), "plain text");
        assert_eq!(msg(""), "Bad Request");
        assert_eq!(msg(&"é".repeat(2000)).chars().count(), MAX_QUOTED);
    }
}
