//! In-process tests of the router: requests go through `oneshot`, no socket, no model
//! upstream. They cover validation and routing; whole agent turns are the e2e suite's.

mod agents;
mod downloads;
mod egress;
mod environments;
mod events;
mod lists;
mod requests;
mod sessions;
mod streams;
mod throttle;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use agentd_brain::{Harness, HarnessConfig, Previews, Runner};
use agentd_catalog::{Keys, Storage};
use agentd_models::{Registry, RegistryConfig};
use agentd_store::Store;

use crate::{AppState, RateLimit};

const KEY: &str = "test-key";

/// A router over a fresh store in a temp dir, with one API key in the default workspace.
pub struct TestApi {
    router: axum::Router,
    pub store: Arc<dyn Storage>,
    dir: tempfile::TempDir,
}

/// A response: its status and its body as JSON (a non-JSON body is a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl TestApi {
    pub async fn new() -> TestApi {
        let dir = tempfile::tempdir().expect("temp dir");
        let scripts_dir = dir.path().join("scripts");
        std::fs::create_dir_all(&scripts_dir).expect("scripts dir");
        let store = Store::open(&dir.path().join("agentd.db")).expect("open the store");
        store
            .register_key(KEY, agentd_catalog::DEFAULT_WORKSPACE)
            .await
            .expect("register the key");
        // No Anthropic key, no providers: only `scripted/*` models resolve.
        let models = Arc::new(Registry::new(RegistryConfig {
            scripts_dir,
            ..RegistryConfig::default()
        }));
        let previews = Previews::default();
        let harness = Harness::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            models.clone(),
            previews.clone(),
            HarnessConfig::default(),
        );
        let store: Arc<dyn Storage> = Arc::new(store);
        let sealer = agentd_vault::Sealer::new(&agentd_vault::Key::generate());
        let resolver = agentd_vault::Resolver::new(
            store.clone(),
            sealer.clone(),
            agentd_vault::Reach::default(),
        );
        let state = AppState::new(
            store.clone(),
            Runner::new(harness, store.clone(), agentd_brain::DEFAULT_LEASE),
            previews,
            models,
            RateLimit {
                per_second: 0.0,
                burst: 0.0,
            },
        )
        .with_vault(sealer, resolver);
        TestApi {
            router: crate::router(state),
            store,
            dir,
        }
    }

    /// Write `scripts/<name>.yaml`, the script of model `scripted/<name>`.
    pub fn script(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join("scripts").join(format!("{name}.yaml"));
        std::fs::write(path, yaml).expect("write the script");
    }

    /// A key of another workspace, made on first use.
    pub async fn key_of(&self, workspace: &str) -> String {
        let key = format!("key-of-{workspace}");
        self.store
            .register_key(&key, workspace)
            .await
            .expect("register the key");
        key
    }

    /// Send a request with the test key (or `key`, or none) and read the whole reply.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("request");
        self.request(req).await
    }

    pub async fn request(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(KEY), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.call(Method::POST, path, Some(KEY), Some(body.into()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(KEY), None).await
    }

    /// A new agent on `model`; its id.
    pub async fn agent(&self, model: &str) -> String {
        let a = self
            .post("/v1/agents", json!({"name": "a", "model": model}))
            .await
            .ok();
        a["id"].as_str().expect("agent id").to_owned()
    }

    pub async fn environment(&self) -> String {
        let e = self
            .post("/v1/environments", json!({"name": "env"}))
            .await
            .ok();
        e["id"].as_str().expect("environment id").to_owned()
    }

    /// A new idle session of a new agent on `model`; its id.
    pub async fn session_on(&self, model: &str) -> String {
        let body = json!({
            "agent": self.agent(model).await,
            "environment_id": self.environment().await,
        });
        let s = self.post("/v1/sessions", body).await.ok();
        assert_eq!(s["status"], "idle");
        s["id"].as_str().expect("session id").to_owned()
    }

    pub async fn session(&self) -> String {
        self.session_on("scripted/echo").await
    }

    /// Send `events` to session `sid`.
    pub async fn send(&self, sid: &str, events: Value) -> Reply {
        self.post(
            &format!("/v1/sessions/{sid}/events"),
            json!({ "events": events }),
        )
        .await
    }
}

impl Reply {
    /// The body of a 200.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self.body
    }

    /// Assert this is Anthropic's error shape with `status` and `kind`, and that the message
    /// holds `part`; returns the message.
    #[track_caller]
    pub fn err(&self, status: u16, kind: &str, part: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let b = &self.body;
        assert_eq!(b["type"], "error", "body: {b}");
        assert_eq!(b["error"]["type"], kind, "body: {b}");
        assert_eq!(
            b.as_object().map(|o| o.len()),
            Some(2),
            "only type and error: {b}"
        );
        let msg = b["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned();
        assert!(msg.contains(part), "{msg:?} does not contain {part:?}");
        msg
    }

    /// A 400 `invalid_request_error` whose message holds `part`.
    #[track_caller]
    pub fn invalid(&self, part: &str) -> String {
        self.err(400, "invalid_request_error", part)
    }
}
