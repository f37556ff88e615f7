//! A downloaded file is saved by a browser, never rendered on agentd's origin.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use super::{KEY, TestApi};

#[tokio::test]
async fn downloads_are_attachments_a_browser_may_not_sniff() {
    let api = TestApi::new().await;
    let body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x \\\"y\\\".html\"\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>\r\n--b--\r\n";
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header("x-api-key", KEY)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Body::from(body))
        .unwrap();
    let up = api.request(req).await;
    assert_eq!(up.status, StatusCode::OK, "{up:?}");
    let id = up.body["id"].as_str().unwrap();
    let req = Request::builder()
        .uri(format!("/v1/files/{id}/content"))
        .header("x-api-key", KEY)
        .body(Body::empty())
        .unwrap();
    let res = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    let disposition = h["content-disposition"].to_str().unwrap();
    let name = disposition.strip_prefix("attachment; filename*=UTF-8''");
    // The uploader's quotes and spaces cannot end the value or start a parameter.
    assert_eq!(name, Some("x%20%22y%22.html"), "{disposition}");
}
