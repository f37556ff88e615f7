//! Guessing keys is throttled per client address; a known key is never held back by it.

use axum::http::{Method, StatusCode};

use super::TestApi;

#[tokio::test]
async fn failed_authentication_is_throttled_with_retry_after() {
    let api = TestApi::new().await;
    assert_eq!(api.get("/v1/agents").await.status, StatusCode::OK);
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = api
            .call(Method::GET, "/v1/agents", Some(&format!("guess-{i}")), None)
            .await;
        statuses.push(r.status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    let req = axum::http::Request::builder()
        .uri("/v1/agents")
        .header("x-api-key", "guess-again")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(api.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    // The key holder, already known, is not locked out by someone guessing beside it.
    assert_eq!(api.get("/v1/agents").await.status, StatusCode::OK);
}

#[tokio::test]
async fn guessing_worker_credentials_is_throttled_too() {
    let api = TestApi::new().await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = if i % 2 == 0 {
            format!("sk-agentd-env-{i:048}")
        } else {
            format!("sk-agentd-work-work_x.{i:048}")
        };
        let r = api
            .call(
                Method::GET,
                "/v1/environments/env_x/work",
                Some(&guess),
                None,
            )
            .await;
        statuses.push(r.status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[10..], [StatusCode::TOO_MANY_REQUESTS; 2]);
}
