//! `/v1/environments`: the config as the SDK sends it.

use serde_json::json;

use super::TestApi;

#[tokio::test]
async fn self_hosted_environments_are_stored_and_a_cloud_one_has_no_work_queue() {
    let api = TestApi::new().await;
    let e = api
        .post(
            "/v1/environments",
            json!({"name": "mine", "config": {"type": "self_hosted"}}),
        )
        .await
        .ok();
    assert_eq!(e["config"]["type"], "self_hosted");
    let id = api.environment().await;
    api.get(&format!("/v1/environments/{id}/work/stats"))
        .await
        .invalid(&format!(
            "environment_id: {id} is not a self_hosted environment"
        ));
}

#[tokio::test]
async fn null_is_accepted_where_the_sdk_allows_it_and_an_update_keeps_what_it_omits() {
    let api = TestApi::new().await;
    let e = api
        .post(
            "/v1/environments",
            json!({"name": "n", "description": null, "scope": null, "config": {
                "type": "cloud",
                "networking": {"type": "limited", "allowed_hosts": ["a.example.com"],
                               "allow_mcp_servers": null, "allow_package_managers": true},
                "packages": {"type": null, "pip": ["requests"], "npm": null},
            }}),
        )
        .await
        .ok();
    let net = &e["config"]["networking"];
    assert_eq!(net["allow_mcp_servers"], false);
    assert_eq!(e["config"]["packages"]["npm"], json!([]));
    let id = e["id"].as_str().expect("id");
    let u = api
        .post(
            &format!("/v1/environments/{id}"),
            json!({"config": {"type": "cloud", "networking": null, "packages": {"apt": ["git"]}}}),
        )
        .await
        .ok();
    assert_eq!(u["config"]["networking"], *net);
    assert_eq!(u["config"]["packages"]["pip"], json!(["requests"]));
    assert_eq!(u["config"]["packages"]["apt"], json!(["git"]));
    api.post(
        "/v1/environments",
        json!({"name": "n", "config": {"type": "cloud", "networking": null, "packages": null}}),
    )
    .await
    .ok();
}
