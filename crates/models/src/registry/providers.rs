//! Named upstream providers (`<name>/<model>` model ids): their configuration, the YAML file
//! they are read from, and the checks that keep a bad file from starting a server.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI-compatible `POST {base_url}/chat/completions` (vLLM, llama.cpp, Ollama, ...);
    /// `base_url` includes the API prefix, e.g. `http://127.0.0.1:8000/v1`.
    #[default]
    OpenAi,
    /// Anthropic Messages `POST {base_url}/v1/messages`, e.g. a gateway in front of Claude.
    Anthropic,
}

/// One upstream reachable as `<name>/<model>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ProviderConfig {
    /// The model-id prefix, e.g. `vllm` in `vllm/meta-llama/Llama-3.1-8B-Instruct`.
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Sent as `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic) when set.
    pub api_key: Option<String>,
    /// The upstream model ids this provider may be asked for; `None` allows any.
    pub models: Option<Vec<String>>,
    /// Longest silence tolerated mid-request; `None` keeps the client's default (120 s).
    pub idle_timeout: Option<Duration>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("models", &self.models)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    kind: ProviderKind,
    base_url: String,
    api_key: Option<String>,
    api_key_env: Option<String>,
    models: Option<Vec<String>>,
    idle_timeout_secs: Option<u64>,
}

/// Reads a providers file:
///
/// ```yaml
/// providers:
///   - name: vllm                      # model ids `vllm/<model>`
///     kind: openai                    # openai | anthropic
///     base_url: http://127.0.0.1:8000/v1
///     api_key_env: VLLM_API_KEY       # optional: key read from this variable now
///     # api_key: sk-...               # optional alternative: the key itself
///     models: [meta-llama/Llama-3.1-8B-Instruct]   # optional allow-list
///     idle_timeout_secs: 300          # optional, default 120
/// ```
///
/// Errors name the file, and the line and column where the YAML is wrong.
pub fn load_providers(path: &Path) -> Result<Vec<ProviderConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_providers(&path.display().to_string(), &text, |var| {
        std::env::var(var).ok()
    })
}

/// `name` only labels error messages; `env` looks up `api_key_env` variables.
fn parse_providers(
    name: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ProviderConfig>, String> {
    let file: ProvidersFile =
        yaml_serde::from_str(text).map_err(|e| crate::yaml::error(name, &e))?;
    let mut providers = Vec::with_capacity(file.providers.len());
    for (i, entry) in file.providers.into_iter().enumerate() {
        let api_key = match (entry.api_key, entry.api_key_env) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{name}: providers[{i}] ({}): set `api_key` or `api_key_env`, not both",
                    entry.name
                ));
            }
            (Some(key), None) => Some(key),
            (None, Some(var)) => match env(&var).filter(|k| !k.trim().is_empty()) {
                Some(key) => Some(key),
                None => {
                    return Err(format!(
                        "{name}: providers[{i}] ({}): api_key_env {var} is not set or empty",
                        entry.name
                    ));
                }
            },
            (None, None) => None,
        };
        providers.push(ProviderConfig {
            name: entry.name,
            kind: entry.kind,
            base_url: entry.base_url,
            api_key,
            models: entry.models,
            idle_timeout: entry.idle_timeout_secs.map(Duration::from_secs),
        });
    }
    validate(&providers).map_err(|e| format!("{name}: {e}"))?;
    Ok(providers)
}

/// What makes a provider list unusable: names that could not be routed to (reserved,
/// duplicate, not a plain word), URLs reqwest would refuse, and allow-lists that allow nothing.
pub(super) fn validate(providers: &[ProviderConfig]) -> Result<(), String> {
    for (i, p) in providers.iter().enumerate() {
        let at = format!("providers[{i}] ({})", p.name);
        let plain = !p.name.is_empty()
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !plain {
            return Err(format!(
                "{at}: a name needs letters, digits, `_`, `.` or `-` only"
            ));
        }
        // `scripted/`, `local/` and `claude-*` are routed before providers, so such a name could never
        // be reached.
        if p.name == "scripted" || p.name == "local" || p.name.starts_with("claude-") {
            return Err(format!(
                "{at}: the name is reserved (`scripted/`, `local/` and `claude-*` route elsewhere)"
            ));
        }
        if providers[..i].iter().any(|q| q.name == p.name) {
            return Err(format!("{at}: the name is used twice"));
        }
        let url_ok = (p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
            && reqwest::Url::parse(&p.base_url).is_ok();
        if !url_ok {
            return Err(format!(
                "{at}: base_url {:?} is not an http(s) URL",
                p.base_url
            ));
        }
        if let Some(models) = &p.models {
            if models.is_empty() {
                return Err(format!(
                    "{at}: `models` is empty; list the models or leave it out to allow any"
                ));
            }
            if models.iter().any(|m| m.is_empty()) {
                return Err(format!("{at}: `models` holds an empty model id"));
            }
        }
        if p.idle_timeout == Some(Duration::ZERO) {
            return Err(format!("{at}: idle_timeout_secs must be at least 1"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ProviderConfig>, String> {
        parse_providers("p.yaml", text, |var| {
            (var == "VLLM_API_KEY").then(|| "sk-vllm".to_owned())
        })
    }

    #[test]
    fn loads_the_documented_format() {
        let got = parse(
            "providers:\n\
             \x20 - name: vllm\n\
             \x20   kind: openai\n\
             \x20   base_url: http://127.0.0.1:8000/v1\n\
             \x20   api_key_env: VLLM_API_KEY   # read now\n\
             \x20   models: [meta-llama/Llama-3.1-8B-Instruct]\n\
             \x20 - name: gateway\n\
             \x20   kind: anthropic\n\
             \x20   base_url: https://llm.example.com\n\
             \x20   api_key: sk-literal\n\
             \x20   idle_timeout_secs: 300\n\
             \x20 - {name: ollama, kind: openai, base_url: 'http://localhost:11434/v1'}\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ProviderConfig {
                    name: "vllm".into(),
                    kind: ProviderKind::OpenAi,
                    base_url: "http://127.0.0.1:8000/v1".into(),
                    api_key: Some("sk-vllm".into()),
                    models: Some(vec!["meta-llama/Llama-3.1-8B-Instruct".into()]),
                    idle_timeout: None,
                },
                ProviderConfig {
                    name: "gateway".into(),
                    kind: ProviderKind::Anthropic,
                    base_url: "https://llm.example.com".into(),
                    api_key: Some("sk-literal".into()),
                    models: None,
                    idle_timeout: Some(Duration::from_secs(300)),
                },
                ProviderConfig {
                    name: "ollama".into(),
                    base_url: "http://localhost:11434/v1".into(),
                    ..ProviderConfig::default()
                },
            ]
        );
        assert!(!format!("{:?}", got[0]).contains("sk-vllm"));
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("providers: []\n").unwrap(), vec![]);
    }

    #[test]
    fn yaml_errors_name_file_line_and_column() {
        let e = parse("providers:\n  - name: a\n    kind: openai\n    base_ur: http://x\n")
            .unwrap_err();
        assert!(e.starts_with("p.yaml:4:5: "), "{e}");
        assert!(e.contains("unknown field `base_ur`"), "{e}");
        let e = parse("providers:\n  - name: a\n    kind: gemini\n    base_url: http://x\n")
            .unwrap_err();
        assert!(e.starts_with("p.yaml:3:11: "), "{e}");
        assert!(e.contains("gemini"), "{e}");
        let e = parse("providers:\n  - name: [oops\n").unwrap_err();
        assert!(e.starts_with("p.yaml:"), "{e}");

        let e = load_providers(Path::new("/nonexistent/providers.yaml")).unwrap_err();
        assert!(e.starts_with("/nonexistent/providers.yaml: "), "{e}");
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        let entry = |extra: &str| {
            format!(
                "providers:\n  - {{name: ok, kind: openai, base_url: 'http://h/v1'}}\n  - {{kind: openai, {extra}}}\n"
            )
        };
        for (extra, wanted) in [
            ("name: a/b, base_url: 'http://h'", "letters, digits"),
            ("name: '', base_url: 'http://h'", "letters, digits"),
            ("name: scripted, base_url: 'http://h'", "reserved"),
            ("name: local, base_url: 'http://h'", "reserved"),
            ("name: claude-x, base_url: 'http://h'", "reserved"),
            ("name: ok, base_url: 'http://h'", "used twice"),
            ("name: b, base_url: 'localhost:8000'", "not an http(s) URL"),
            (
                "name: b, base_url: 'http://h', models: []",
                "`models` is empty",
            ),
            (
                "name: b, base_url: 'http://h', idle_timeout_secs: 0",
                "at least 1",
            ),
            (
                "name: b, base_url: 'http://h', api_key: k, api_key_env: VLLM_API_KEY",
                "not both",
            ),
            (
                "name: b, base_url: 'http://h', api_key_env: UNSET_VAR",
                "UNSET_VAR is not set",
            ),
        ] {
            let e = parse(&entry(extra)).unwrap_err();
            assert!(e.starts_with("p.yaml: providers[1] ("), "{extra}: {e}");
            assert!(e.contains(wanted), "{extra}: {e}");
        }
    }
}
