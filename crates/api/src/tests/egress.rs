//! Environments cannot name destinations no sandbox may reach.

use axum::http::StatusCode;
use serde_json::json;

use super::TestApi;

fn limited(hosts: &[&str]) -> serde_json::Value {
    json!({"type": "cloud", "networking": {"type": "limited", "allowed_hosts": hosts}})
}

#[tokio::test]
async fn hosts_naming_this_machine_or_private_space_are_refused_naming_the_field() {
    let api = TestApi::new().await;
    for host in [
        "localhost",
        "127.0.0.1",
        "169.254.169.254",
        "[::1]",
        "10.0.0.7",
        "*.localhost",
    ] {
        let r = api
            .post(
                "/v1/environments",
                json!({"name": "e", "config": limited(&["example.com", host])}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}: {r:?}");
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("config.networking.allowed_hosts[1]"), "{msg}");
    }
    let ok = api
        .post(
            "/v1/environments",
            json!({"name": "e", "config": limited(&["example.com", "8.8.8.8"])}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let id = ok.body["id"].as_str().unwrap();
    let r = api
        .post(
            &format!("/v1/environments/{id}"),
            json!({"config": limited(&["169.254.169.254"])}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}
