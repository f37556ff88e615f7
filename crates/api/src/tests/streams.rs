//! The cap on event streams one API key holds open.

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use tower::ServiceExt;

use super::{KEY, TestApi};
use crate::DEFAULT_STREAMS_PER_KEY;

async fn open(api: &TestApi, sid: &str, key: &str) -> Response<Body> {
    let req = Request::get(format!("/v1/sessions/{sid}/events/stream"))
        .header("x-api-key", key)
        .body(Body::empty())
        .expect("request");
    api.router.clone().oneshot(req).await.expect("infallible")
}

#[tokio::test]
async fn one_key_holds_at_most_its_streams_and_a_closed_one_frees_a_slot() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let mut held = Vec::new();
    for _ in 0..DEFAULT_STREAMS_PER_KEY {
        let r = open(&api, &sid, KEY).await;
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let over = api
        .request(
            Request::get(format!("/v1/sessions/{sid}/events/stream"))
                .header("x-api-key", KEY)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    over.err(429, "rate_limit_error", "64 event streams open");
    // Another key has streams of its own.
    let other = api.key_of(agentd_catalog::DEFAULT_WORKSPACE).await;
    assert_eq!(open(&api, &sid, &other).await.status(), StatusCode::OK);
    // A client that goes away gives its slot back.
    drop(held.pop());
    assert_eq!(open(&api, &sid, KEY).await.status(), StatusCode::OK);
}
