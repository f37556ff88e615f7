//! What every request goes through: the key, the route, the method, the body.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use super::{KEY, TestApi};

#[tokio::test]
async fn a_missing_key_is_401_in_the_anthropic_error_shape() {
    let api = TestApi::new().await;
    let r = api.call(Method::GET, "/v1/agents", None, None).await;
    r.err(401, "authentication_error", "missing API key");
    assert_eq!(
        r.body["error"]["message"],
        "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>"
    );
    // A blank key is no key.
    let r = api.call(Method::GET, "/v1/agents", Some("  "), None).await;
    r.err(401, "authentication_error", "missing API key");
}

#[tokio::test]
async fn an_unknown_key_is_401() {
    let api = TestApi::new().await;
    let r = api
        .call(Method::GET, "/v1/agents", Some("not-a-key"), None)
        .await;
    r.err(401, "authentication_error", "invalid API key");
    // Even on a route that would otherwise 404 a missing resource.
    let r = api
        .call(Method::GET, "/v1/sessions/sesn_x", Some("not-a-key"), None)
        .await;
    r.err(401, "authentication_error", "invalid API key");
}

#[tokio::test]
async fn a_bearer_key_is_accepted_and_a_bad_one_refused() {
    let api = TestApi::new().await;
    let bearer = |k: &str| {
        Request::get("/v1/agents")
            .header("authorization", format!("Bearer {k}"))
            .body(Body::empty())
            .expect("request")
    };
    let r = api.request(bearer(KEY)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"], json!([]));
    api.request(bearer("wrong"))
        .await
        .err(401, "authentication_error", "invalid API key");
    // Another scheme is not a key.
    let basic = Request::get("/v1/agents")
        .header("authorization", format!("Basic {KEY}"))
        .body(Body::empty())
        .expect("request");
    api.request(basic)
        .await
        .err(401, "authentication_error", "missing API key");
}

#[tokio::test]
async fn health_needs_no_key() {
    let api = TestApi::new().await;
    let r = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ok");
}

#[tokio::test]
async fn an_unknown_route_is_404_in_the_anthropic_error_shape() {
    let api = TestApi::new().await;
    api.get("/v1/nothing-here")
        .await
        .err(404, "not_found_error", "no such route");
    api.post("/v1/agents/agent_x/nothing", json!({})).await.err(
        404,
        "not_found_error",
        "no such route",
    );
}

#[tokio::test]
async fn an_unsupported_method_is_405_naming_it() {
    let api = TestApi::new().await;
    api.delete("/v1/agents").await.err(
        405,
        "invalid_request_error",
        "DELETE is not supported on /v1/agents",
    );
    let r = api
        .call(Method::PUT, "/v1/sessions/sesn_x/events", Some(KEY), None)
        .await;
    r.err(
        405,
        "invalid_request_error",
        "PUT is not supported on /v1/sessions/sesn_x/events",
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let api = TestApi::new().await;
    let big = vec![b' '; crate::MAX_BODY_BYTES + 1];
    api.post_raw("/v1/agents", big).await.err(
        413,
        "request_too_large",
        &format!("request body exceeds {} bytes", crate::MAX_BODY_BYTES),
    );
    // Exactly at the limit is read (and then refused only for what it holds).
    let at = vec![b' '; crate::MAX_BODY_BYTES];
    api.post_raw("/v1/agents", at)
        .await
        .invalid("request body is empty");
}

#[tokio::test]
async fn malformed_json_is_400_saying_so() {
    let api = TestApi::new().await;
    let msg = api
        .post_raw("/v1/agents", r#"{"name": "a", "model": "#)
        .await
        .invalid("malformed JSON: ");
    assert!(msg.contains("EOF"), "{msg}");
    api.post_raw("/v1/agents", r#"{"name": 'a'}"#)
        .await
        .invalid("malformed JSON: expected value at line 1 column 10");
    api.post_raw(
        "/v1/agents",
        r#"{"name": "a", "model": "scripted/echo"} trailing"#,
    )
    .await
    .invalid("malformed JSON: trailing characters");
}

#[tokio::test]
async fn an_empty_body_is_400() {
    let api = TestApi::new().await;
    api.post_raw("/v1/agents", "")
        .await
        .invalid("request body is empty; expected a JSON object");
    api.post_raw("/v1/sessions/sesn_x/events", " \n")
        .await
        .invalid("request body is empty");
}

#[tokio::test]
async fn schema_errors_name_the_field() {
    let api = TestApi::new().await;
    api.post(
        "/v1/agents",
        json!({"name": "a", "model": "scripted/echo", "colour": "blue"}),
    )
    .await
    .invalid("unknown field `colour`");
    api.post("/v1/agents", json!({"name": 7, "model": "scripted/echo"}))
        .await
        .invalid("name: invalid type: integer `7`, expected a string");
    api.post(
        "/v1/agents",
        json!({"name": "a", "model": "scripted/echo", "metadata": {"k": 1}}),
    )
    .await
    .invalid("metadata.k: invalid type: integer `1`");
    api.post("/v1/agents", json!("agent")).await.invalid(
        "invalid request body: invalid type: string \"agent\", expected struct CreateAgent",
    );
}

/// Serde would read a struct from an array of its fields in order: `["a", "scripted/echo"]`
/// must not create an agent.
#[tokio::test]
async fn an_array_body_is_not_an_object() {
    let api = TestApi::new().await;
    api.post("/v1/agents", json!(["a", "scripted/echo"]))
        .await
        .invalid("expected");
}
