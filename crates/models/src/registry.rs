//! Routes a model id from an agent definition to the provider that serves it.
//!
//! | model id | served by | upstream model |
//! |---|---|---|
//! | `claude-*` | the default Anthropic client ([`RegistryConfig`]) | the id as is |
//! | `scripted/echo` | the built-in echo model | `echo` |
//! | `scripted/<name>` | the script `<scripts_dir>/<name>.yaml` | `<name>` |
//! | `local/<name>` | a GGUF file run in-process ([`Registry::with_local`]) | `<name>` |
//! | `<provider>/<model>` | the provider named `<provider>` ([`Registry::with_providers`]) | `<model>`, which may itself hold `/` |
//!
//! `claude-*`, `scripted/` and `local/` are matched first, so none can name a provider. A provider
//! with a `models` allow-list refuses any other model. Every refusal is an [`UnknownModel`]
//! naming what would have worked, so a bad model id fails agent creation rather than a turn.
//! Providers are usually read from a YAML file with [`load_providers`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::Model;
use crate::anthropic::{Anthropic, DEFAULT_BASE_URL};
use crate::openai::OpenAi;
use crate::scripted::Scripted;

mod providers;
pub use providers::{ProviderConfig, ProviderKind, load_providers};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub anthropic_base_url: String,
    pub anthropic_api_key: Option<String>,
    /// Where `scripted/<name>` finds `<name>.yaml`.
    pub scripts_dir: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            anthropic_base_url: DEFAULT_BASE_URL.into(),
            anthropic_api_key: None,
            scripts_dir: PathBuf::from("scripts"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnknownModel {
    pub message: String,
}

impl UnknownModel {
    fn new(message: impl Into<String>) -> UnknownModel {
        UnknownModel {
            message: message.into(),
        }
    }
}

/// A parsed script plus the file stamp it was parsed from.
struct CachedScript {
    modified: Option<SystemTime>,
    len: u64,
    model: Arc<Scripted>,
}

pub struct Registry {
    scripts_dir: PathBuf,
    /// Either the shared client, or why `claude-*` cannot be served.
    anthropic: Result<Arc<Anthropic>, String>,
    echo: Arc<Scripted>,
    scripts: Mutex<HashMap<PathBuf, CachedScript>>,
    providers: Vec<Provider>,
    local: Option<Arc<dyn crate::LocalModels>>,
}

/// A named provider, ready to serve.
struct Provider {
    name: String,
    models: Option<Vec<String>>,
    /// Either the client, or why it could not be built.
    model: Result<Arc<dyn Model>, String>,
}

impl Registry {
    pub fn new(cfg: RegistryConfig) -> Registry {
        let anthropic = match cfg.anthropic_api_key.filter(|k| !k.trim().is_empty()) {
            None => Err(
                "claude-* models need an Anthropic API key: set AGENTD_ANTHROPIC_API_KEY"
                    .to_owned(),
            ),
            Some(key) => crate::transport::client()
                .map(|http| Arc::new(Anthropic::with_client(http, &cfg.anthropic_base_url, key)))
                .map_err(|e| format!("claude-* models are unavailable: {e}")),
        };
        Registry {
            scripts_dir: cfg.scripts_dir,
            anthropic,
            echo: Arc::new(Scripted::echo()),
            scripts: Mutex::default(),
            providers: Vec::new(),
            local: None,
        }
    }

    /// Serve `local/<name>` with these in-process models.
    pub fn with_local(mut self, local: Arc<dyn crate::LocalModels>) -> Registry {
        self.local = Some(local);
        self
    }

    /// Adds the providers reached as `<name>/<model>`, replacing any added before. Refuses a
    /// list with an unusable entry (reserved or duplicate name, bad URL, empty allow-list), so
    /// a bad configuration stops startup instead of failing agents one by one.
    pub fn with_providers(mut self, providers: Vec<ProviderConfig>) -> Result<Registry, String> {
        providers::validate(&providers)?;
        self.providers = Vec::new();
        if providers.is_empty() {
            return Ok(self);
        }
        // One pool for all providers: connections are per host anyway.
        let http = crate::transport::client().map_err(|e| e.to_string());
        self.providers = providers
            .into_iter()
            .map(|p| {
                let model = match &http {
                    Err(e) => Err(format!("provider {:?} is unavailable: {e}", p.name)),
                    Ok(http) => Ok(provider_model(http.clone(), &p)),
                };
                Provider {
                    name: p.name,
                    models: p.models,
                    model,
                }
            })
            .collect();
        Ok(self)
    }

    /// The provider for `model_id` and the upstream model id to put in `Request.model`.
    /// Scripts are read and checked here, so a broken one fails agent creation, not a turn.
    pub fn resolve(&self, model_id: &str) -> Result<(Arc<dyn Model>, String), UnknownModel> {
        if model_id.starts_with("claude-") {
            let model = self.anthropic.clone().map_err(UnknownModel::new)?;
            return Ok((model, model_id.to_owned()));
        }
        if let Some(name) = model_id.strip_prefix("local/") {
            let Some(local) = &self.local else {
                return Err(UnknownModel::new(format!(
                    "model {model_id:?}: this agentd was built without local models"
                )));
            };
            local.check(name).map_err(UnknownModel::new)?;
            let model: Arc<dyn Model> = local.clone();
            return Ok((model, name.to_owned()));
        }
        let Some(name) = model_id.strip_prefix("scripted/") else {
            if let Some((provider, upstream)) = model_id.split_once('/') {
                return self.provider(model_id, provider, upstream);
            }
            return Err(UnknownModel::new(format!(
                "unknown model {model_id:?}: expected claude-* (Anthropic), scripted/echo, \
                 scripted/<name> for the script {}, or <provider>/<model> ({})",
                self.scripts_dir.join("<name>.yaml").display(),
                self.configured()
            )));
        };
        if name == "echo" {
            return Ok((self.echo.clone(), name.to_owned()));
        }
        if !is_file_stem(name) {
            return Err(UnknownModel::new(format!(
                "invalid script name {name:?} in model {model_id:?}: use letters, digits, `_`, `.` \
                 and `-` only"
            )));
        }
        let path = self.scripts_dir.join(format!("{name}.yaml"));
        let model = self
            .script(&path)
            .map_err(|e| UnknownModel::new(format!("model {model_id:?}: {e}")))?;
        Ok((model, name.to_owned()))
    }

    fn provider(
        &self,
        model_id: &str,
        name: &str,
        upstream: &str,
    ) -> Result<(Arc<dyn Model>, String), UnknownModel> {
        let Some(p) = self.providers.iter().find(|p| p.name == name) else {
            return Err(UnknownModel::new(format!(
                "unknown provider {name:?} in model {model_id:?}: {}; other models are \
                 claude-* (Anthropic) and scripted/<name>",
                self.configured()
            )));
        };
        if upstream.is_empty() {
            return Err(UnknownModel::new(format!(
                "model {model_id:?} names no model: use {name}/<model>"
            )));
        }
        if let Some(allowed) = &p.models
            && !allowed.iter().any(|m| m == upstream)
        {
            return Err(UnknownModel::new(format!(
                "model {upstream:?} is not offered by provider {name:?}, which allows only {}",
                allowed.join(", ")
            )));
        }
        let model = p.model.clone().map_err(UnknownModel::new)?;
        Ok((model, upstream.to_owned()))
    }

    /// The configured provider names, for error messages.
    fn configured(&self) -> String {
        if self.providers.is_empty() {
            return "no providers are configured".into();
        }
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        format!("configured providers: {}", names.join(", "))
    }

    /// Parsed once per file version: repeated resolves skip the disk and share the instance,
    /// which keeps its error-injection counters.
    fn script(&self, path: &Path) -> Result<Arc<Scripted>, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read script {}: {e}", path.display()))?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let mut scripts = self.scripts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = scripts.get(path)
            && c.modified == modified
            && c.len == len
        {
            return Ok(c.model.clone());
        }
        let model = Arc::new(Scripted::from_file(path)?);
        scripts.insert(
            path.to_owned(),
            CachedScript {
                modified,
                len,
                model: model.clone(),
            },
        );
        Ok(model)
    }
}

/// Whether `name`, taken from a model id, is safe to join to a directory as a file's stem:
/// letters, digits, `_`, `.` and `-`, and never `..`.
pub fn is_file_stem(name: &str) -> bool {
    !name.is_empty()
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn provider_model(http: reqwest::Client, p: &ProviderConfig) -> Arc<dyn Model> {
    match p.kind {
        ProviderKind::OpenAi => {
            let mut m = OpenAi::with_client(http, &p.base_url, p.api_key.clone());
            if let Some(t) = p.idle_timeout {
                m = m.with_idle_timeout(t);
            }
            Arc::new(m)
        }
        ProviderKind::Anthropic => {
            // A gateway may add the credential itself, so a missing key is sent as empty.
            let key = p.api_key.clone().unwrap_or_default();
            let mut m = Anthropic::with_client(http, &p.base_url, key);
            if let Some(t) = p.idle_timeout {
                m = m.with_idle_timeout(t);
            }
            Arc::new(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, Message, Request, Role};
    use serde_json::{Value, json};

    fn registry(dir: &Path, key: Option<&str>) -> Registry {
        Registry::new(RegistryConfig {
            anthropic_api_key: key.map(str::to_owned),
            scripts_dir: dir.to_owned(),
            ..RegistryConfig::default()
        })
    }

    fn request(text: &str) -> Request {
        Request {
            model: "m".into(),
            system: None,
            messages: vec![Message {
                role: Role::User,
                content: vec![Block::Text { text: text.into() }],
            }],
            tools: vec![],
            max_tokens: 10,
            purpose: crate::Purpose::Turn,
        }
    }

    async fn reply(model: &Arc<dyn Model>, text: &str) -> Result<Vec<Block>, crate::Error> {
        model
            .complete(&request(text), &mut |_| {})
            .await
            .map(|r| r.content)
    }

    #[tokio::test]
    async fn routes_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), Some("sk-test"));
        let (_, upstream) = reg.resolve("claude-sonnet-4-5").unwrap();
        assert_eq!(upstream, "claude-sonnet-4-5");

        let (echo, upstream) = reg.resolve("scripted/echo").unwrap();
        assert_eq!(upstream, "echo");
        assert_eq!(
            reply(&echo, "hi").await.unwrap(),
            vec![Block::Text {
                text: "echo: hi".into()
            }]
        );

        let e = reg.resolve("gpt-4o").err().unwrap();
        assert!(
            e.message.contains("claude-*") && e.message.contains("scripted/echo"),
            "{e}"
        );
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        for bad in ["scripted/", "scripted/../x", "scripted/a/b", "scripted/a b"] {
            let e = reg.resolve(bad).err().unwrap();
            assert!(e.message.contains("invalid script name"), "{bad}: {e}");
        }
        let e = reg.resolve("scripted/missing").err().unwrap();
        assert!(e.message.contains("missing.yaml"), "{e}");
    }

    /// A chat-completions server answering "hi from <model>" and recording what it was sent.
    async fn fake_openai() -> (String, Arc<Mutex<Vec<(Option<String>, Value)>>>) {
        use axum::http::HeaderMap;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let text = format!("hi from {}", body["model"].as_str().unwrap());
                record.lock().unwrap().push((auth, body.0));
                let chunk = json!({"choices": [{"index": 0, "delta": {"content": text},
                    "finish_reason": "stop"}]});
                async move { format!("data: {chunk}\n\ndata: [DONE]\n\n") }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn provider(name: &str, kind: ProviderKind, base_url: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            ..ProviderConfig::default()
        }
    }

    #[tokio::test]
    async fn named_providers_route_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (url, seen) = fake_openai().await;
        let anthropic =
            agentd_testkit::FakeAnthropic::start(vec![agentd_testkit::FakeReply::text(
                "from the gateway",
            )])
            .await;
        let reg = registry(dir.path(), Some("sk-default"))
            .with_providers(vec![
                ProviderConfig {
                    api_key: Some("sk-vllm".into()),
                    ..provider("vllm", ProviderKind::OpenAi, &url)
                },
                ProviderConfig {
                    models: Some(vec!["qwen3".into(), "llama3.2".into()]),
                    ..provider("ollama", ProviderKind::OpenAi, &url)
                },
                ProviderConfig {
                    api_key: Some("sk-gw".into()),
                    ..provider("gw", ProviderKind::Anthropic, &anthropic.base_url())
                },
            ])
            .unwrap();

        let (vllm, upstream) = reg.resolve("vllm/meta-llama/Llama-3.1-8B").unwrap();
        assert_eq!(upstream, "meta-llama/Llama-3.1-8B");
        let mut r = request("x");
        r.model = upstream;
        let reply = vllm.complete(&r, &mut |_| {}).await.unwrap().content;
        assert_eq!(
            reply,
            vec![Block::Text {
                text: "hi from meta-llama/Llama-3.1-8B".into()
            }]
        );
        let (ollama, upstream) = reg.resolve("ollama/qwen3").unwrap();
        assert_eq!(upstream, "qwen3");
        reply_to(&ollama, &upstream).await;
        assert_eq!(
            seen.lock()
                .unwrap()
                .iter()
                .map(|(auth, _)| auth.clone())
                .collect::<Vec<_>>(),
            vec![Some("Bearer sk-vllm".to_owned()), None]
        );

        let (gw, upstream) = reg.resolve("gw/claude-haiku").unwrap();
        assert_eq!(upstream, "claude-haiku");
        reply_to(&gw, &upstream).await;
        assert_eq!(anthropic.requests()[0]["model"], "claude-haiku");
        assert_eq!(anthropic.request_headers()[0]["x-api-key"], "sk-gw");

        // The reserved routes are untouched.
        assert_eq!(
            reg.resolve("claude-sonnet-4-5").unwrap().1,
            "claude-sonnet-4-5"
        );
        assert_eq!(reg.resolve("scripted/echo").unwrap().1, "echo");
    }

    async fn reply_to(model: &Arc<dyn Model>, upstream: &str) {
        let mut r = request("x");
        r.model = upstream.to_owned();
        model.complete(&r, &mut |_| {}).await.unwrap();
    }

    #[test]
    fn provider_refusals_name_what_would_work() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), None)
            .with_providers(vec![
                ProviderConfig {
                    models: Some(vec!["qwen3".into(), "llama3.2".into()]),
                    ..provider("ollama", ProviderKind::OpenAi, "http://127.0.0.1:11434/v1")
                },
                provider("vllm", ProviderKind::OpenAi, "http://127.0.0.1:8000/v1"),
            ])
            .unwrap();
        let e = reg.resolve("ollama/mistral").err().unwrap();
        assert_eq!(
            e.message,
            "model \"mistral\" is not offered by provider \"ollama\", which allows only qwen3, \
             llama3.2"
        );
        let e = reg.resolve("nope/x").err().unwrap();
        assert!(
            e.message
                .starts_with("unknown provider \"nope\" in model \"nope/x\"")
                && e.message.contains("configured providers: ollama, vllm"),
            "{e}"
        );
        let e = reg.resolve("vllm/").err().unwrap();
        assert!(e.message.contains("use vllm/<model>"), "{e}");
        let e = reg.resolve("gpt-4o").err().unwrap();
        assert!(
            e.message.contains("configured providers: ollama, vllm"),
            "{e}"
        );

        let e = registry(dir.path(), None)
            .resolve("openai/gpt-4o")
            .err()
            .unwrap();
        assert!(e.message.contains("no providers are configured"), "{e}");

        let twice = vec![
            provider("a", ProviderKind::OpenAi, "http://h/v1"),
            provider("a", ProviderKind::Anthropic, "http://h"),
        ];
        let e = registry(dir.path(), None)
            .with_providers(twice)
            .err()
            .unwrap();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn claude_without_key_says_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        for key in [None, Some(""), Some("  ")] {
            let e = registry(dir.path(), key)
                .resolve("claude-opus-4")
                .err()
                .unwrap();
            assert!(e.message.contains("AGENTD_ANTHROPIC_API_KEY"), "{e}");
        }
    }

    #[tokio::test]
    async fn scripts_are_cached_by_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flaky.yaml");
        std::fs::write(
            &path,
            "turns:\n  - error: {status: 529, times: 1}\n    text: ok\n",
        )
        .unwrap();
        let reg = registry(dir.path(), None);

        let (a, upstream) = reg.resolve("scripted/flaky").unwrap();
        assert_eq!(upstream, "flaky");
        assert!(reply(&a, "x").await.is_err());
        let (b, _) = reg.resolve("scripted/flaky").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // The counter lives in the shared instance, so the second resolve sees the failure used up.
        assert_eq!(
            reply(&b, "x").await.unwrap(),
            vec![Block::Text { text: "ok".into() }]
        );

        std::fs::write(&path, "turns:\n  - text: changed and longer\n").unwrap();
        let (c, _) = reg.resolve("scripted/flaky").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(
            reply(&c, "x").await.unwrap(),
            vec![Block::Text {
                text: "changed and longer".into()
            }]
        );

        std::fs::write(&path, "turns:\n  - text: [oops\n").unwrap();
        let e = reg.resolve("scripted/flaky").err().unwrap();
        assert!(e.message.contains("flaky.yaml:"), "{e}");
    }
}
