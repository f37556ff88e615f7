//! List endpoints: `limit`, `order`, flags, dates, and the cursor.

use serde_json::{Value, json};

use super::TestApi;

#[tokio::test]
async fn limit_must_be_between_1_and_the_endpoint_maximum() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    for path in ["/v1/agents", "/v1/sessions", "/v1/environments"] {
        for bad in ["0", "101", "-1", "ten", ""] {
            api.get(&format!("{path}?limit={bad}"))
                .await
                .invalid(&format!(
                    "limit: {bad:?} is not an integer between 1 and 100"
                ));
        }
        api.get(&format!("{path}?limit=100")).await.ok();
    }
    // Events and threads go up to 1000, as the SDK's tool runner asks.
    for path in [
        format!("/v1/sessions/{sid}/events"),
        format!("/v1/sessions/{sid}/threads"),
    ] {
        api.get(&format!("{path}?limit=1000")).await.ok();
        api.get(&format!("{path}?limit=1001"))
            .await
            .invalid("limit: \"1001\" is not an integer between 1 and 1000");
        api.get(&format!("{path}?limit=0"))
            .await
            .invalid("limit: \"0\" is not an integer between 1 and 1000");
    }
}

#[tokio::test]
async fn order_is_asc_or_desc() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    for path in [
        "/v1/sessions".to_owned(),
        format!("/v1/sessions/{sid}/events"),
    ] {
        api.get(&format!("{path}?order=sideways"))
            .await
            .invalid("order: \"sideways\" is not asc or desc");
        api.get(&format!("{path}?order=ASC"))
            .await
            .invalid("order: \"ASC\" is not asc or desc");
        api.get(&format!("{path}?order=asc")).await.ok();
        api.get(&format!("{path}?order=desc")).await.ok();
    }
}

#[tokio::test]
async fn flags_dates_and_statuses_are_checked() {
    let api = TestApi::new().await;
    api.get("/v1/agents?include_archived=maybe")
        .await
        .invalid("include_archived: \"maybe\" is not true or false");
    api.get("/v1/sessions?created_at[gte]=yesterday")
        .await
        .invalid("created_at[gte]: \"yesterday\" is not an RFC 3339 date-time");
    api.get("/v1/sessions?statuses[]=idle&statuses[]=sleeping")
        .await
        .invalid("statuses: \"sleeping\" is not one of rescheduling, running, idle, terminated");
    api.get("/v1/sessions?agent_version=x")
        .await
        .invalid("agent_version: \"x\" is not a positive integer");
    api.get("/v1/sessions?created_at[gte]=2026-01-31T12:00:00Z&statuses=idle,running")
        .await
        .ok();
}

#[tokio::test]
async fn the_cursor_walks_every_item_once() {
    let api = TestApi::new().await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(api.agent("scripted/echo").await);
    }
    let first = api.get("/v1/agents?limit=2").await.ok();
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    let next = first["next_page"].as_str().expect("a next page");
    let second = api
        .get(&format!("/v1/agents?limit=2&page={next}"))
        .await
        .ok();
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["next_page"], json!(null));
    let mut seen: Vec<String> = first["data"]
        .as_array()
        .into_iter()
        .chain(second["data"].as_array())
        .flatten()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect();
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
}

#[tokio::test]
async fn events_list_oldest_first_unless_asked() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    for _ in 0..2 {
        api.send(&sid, json!([{"type": "user.interrupt"}]))
            .await
            .ok();
    }
    let ids = |page: serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let asc = ids(api.get(&format!("/v1/sessions/{sid}/events")).await.ok());
    let mut desc = ids(api
        .get(&format!("/v1/sessions/{sid}/events?order=desc"))
        .await
        .ok());
    assert_eq!(asc.len(), 2);
    desc.reverse();
    assert_eq!(asc, desc);
    let only = api
        .get(&format!("/v1/sessions/{sid}/events?types[]=user.message"))
        .await
        .ok();
    assert_eq!(only["data"], json!([]));
}

#[tokio::test]
async fn a_cursor_no_endpoint_returned_is_refused_everywhere() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    for path in [
        "/v1/agents".to_owned(),
        "/v1/sessions".to_owned(),
        "/v1/environments".to_owned(),
        "/v1/files".to_owned(),
        format!("/v1/sessions/{sid}/threads"),
        format!("/v1/sessions/{sid}/events"),
    ] {
        api.get(&format!("{path}?page=garbage"))
            .await
            .invalid("page: \"garbage\" is not a cursor this endpoint returned");
    }
    // A session's id is no cursor of the agents list.
    api.get(&format!("/v1/agents?page={sid}"))
        .await
        .invalid("is not a cursor this endpoint returned");
}

#[tokio::test]
async fn filters_for_what_does_not_exist_here_are_refused() {
    let api = TestApi::new().await;
    for f in ["memory_store_id", "deployment_id"] {
        api.get(&format!("/v1/sessions?{f}=x"))
            .await
            .invalid(&format!("{f}: this filter is not supported"));
    }
}

#[tokio::test]
async fn files_list_by_ids_gives_the_named_files_that_exist() {
    let api = TestApi::new().await;
    let ws = api
        .store
        .register_key("another-key", agentd_catalog::DEFAULT_WORKSPACE)
        .await
        .expect("the test key's workspace")
        .id;
    let mut ids = Vec::new();
    for name in ["a.txt", "b.txt", "c.txt"] {
        let f = api
            .store
            .create_file(
                &ws,
                agentd_catalog::NewFile {
                    filename: name.into(),
                    mime_type: "text/plain".into(),
                    content: b"x".to_vec(),
                    expires_at: None,
                },
            )
            .await
            .expect("create a file");
        ids.push(f.id);
    }
    let p = api
        .get(&format!(
            "/v1/files?ids[]={}&ids[]={}&ids[]={}&ids[]=file_missing",
            ids[0], ids[2], ids[0]
        ))
        .await
        .ok();
    let got: Vec<&str> = p["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[0].as_str()]);
    assert_eq!(p["next_page"], Value::Null);
    // Uploads belong to no session: a scope leaves them out, by ids or not.
    for q in [
        format!("ids={}&scope_id=sesn_1", ids[0]),
        "scope_id=sesn_1".into(),
    ] {
        let p = api.get(&format!("/v1/files?{q}")).await.ok();
        assert_eq!(p["data"], serde_json::json!([]), "{q}");
    }
    api.get(&format!("/v1/files?ids={}&limit=2", ids[0]))
        .await
        .invalid("ids: cannot be combined with page or limit");
    let many: Vec<String> = (0..101).map(|i| format!("ids=file_{i}")).collect();
    api.get(&format!("/v1/files?{}", many.join("&")))
        .await
        .invalid("ids: 101 distinct ids is over the limit of 100");
}
