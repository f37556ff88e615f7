//! Routes a model id from an agent definition to the provider that serves it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::Model;
use crate::anthropic::{Anthropic, DEFAULT_BASE_URL};
use crate::scripted::Scripted;

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
}

impl Registry {
    pub fn new(cfg: RegistryConfig) -> Registry {
        let anthropic = match cfg.anthropic_api_key.filter(|k| !k.trim().is_empty()) {
            None => Err(
                "claude-* models need an Anthropic API key: set AGENTD_ANTHROPIC_API_KEY"
                    .to_owned(),
            ),
            Some(key) => Anthropic::http_client()
                .map(|http| Arc::new(Anthropic::with_client(http, &cfg.anthropic_base_url, key)))
                .map_err(|e| format!("claude-* models are unavailable: {e}")),
        };
        Registry {
            scripts_dir: cfg.scripts_dir,
            anthropic,
            echo: Arc::new(Scripted::echo()),
            scripts: Mutex::default(),
        }
    }

    /// The provider for `model_id` and the upstream model id to put in `Request.model`.
    /// Scripts are read and checked here, so a broken one fails agent creation, not a turn.
    pub fn resolve(&self, model_id: &str) -> Result<(Arc<dyn Model>, String), UnknownModel> {
        if model_id.starts_with("claude-") {
            let model = self.anthropic.clone().map_err(UnknownModel::new)?;
            return Ok((model, model_id.to_owned()));
        }
        let Some(name) = model_id.strip_prefix("scripted/") else {
            return Err(UnknownModel::new(format!(
                "unknown model {model_id:?}: expected claude-* (Anthropic), scripted/echo, or \
                 scripted/<name> for the script {}",
                self.scripts_dir.join("<name>.yaml").display()
            )));
        };
        if name == "echo" {
            return Ok((self.echo.clone(), name.to_owned()));
        }
        let valid = !name.is_empty()
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, Message, Request, Role};

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
