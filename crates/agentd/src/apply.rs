//! `agentd apply -f FILE`: declare agents and environments in YAML; make the server match.
//!
//! Resources are matched by name. A changed agent gets a new version; an unchanged one is left
//! alone and reported as such. Errors in the file name the file, line, column and field.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use agentd_wire::agent::{CreateAgent, MultiagentParams, RosterParam};
use agentd_wire::environment::CreateEnvironment;

use crate::Remote;
use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    /// YAML file(s) of agents and environments; `-` reads stdin.
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

/// Largest YAML file accepted; agent definitions are small, and the cap bounds alias bombs.
const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub enum Doc {
    Agent(Box<CreateAgent>),
    Environment(Box<CreateEnvironment>),
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// A YAML problem located in the file.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{file}:{line}:{column}: {message}")]
pub struct YamlError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parse every document of a file.
pub fn parse(file: &str, text: &str) -> Result<Vec<Doc>, YamlError> {
    let mut out = Vec::new();
    for (start_line, doc) in split_documents(text) {
        if doc
            .trim()
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let at = |e: &yaml_serde::Error, path: &str| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let msg = e.to_string();
            // The location is reported by us, with the document's offset; drop libyaml's own.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            YamlError {
                file: file.to_owned(),
                line: start_line + line - 1,
                column,
                message: if path.is_empty() || path == "." || msg.starts_with(path) {
                    msg
                } else {
                    format!("{path}: {msg}")
                },
            }
        };
        let kind: KindOnly = yaml_serde::from_str(&doc).map_err(|e| at(&e, ""))?;
        let body = blank_kind_line(&doc);
        let parsed = match kind.kind.as_deref() {
            Some("agent") => Doc::Agent(Box::new(
                typed::<CreateAgent>(&body).map_err(|(p, e)| at(&e, &p))?,
            )),
            Some("environment") => {
                Doc::Environment(Box::new(typed(&body).map_err(|(p, e)| at(&e, &p))?))
            }
            other => {
                return Err(YamlError {
                    file: file.to_owned(),
                    line: start_line,
                    column: 1,
                    message: match other {
                        Some(k) => format!("kind: {k:?} is not one of agent, environment"),
                        None => {
                            "kind: missing; expected `kind: agent` or `kind: environment`".into()
                        }
                    },
                });
            }
        };
        out.push(parsed);
    }
    Ok(out)
}

fn typed<T: DeserializeOwned>(text: &str) -> Result<T, (String, yaml_serde::Error)> {
    serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text))
        .map_err(|e| (e.path().to_string(), e.into_inner()))
}

/// Documents split on `---` lines, each with the 1-based line it starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((i + 2, String::new()));
            continue;
        }
        if let Some((_, d)) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs
}

/// Replace the top-level `kind:` line with a comment, keeping every other line where it was
/// so positions in errors stay true.
fn blank_kind_line(doc: &str) -> String {
    doc.lines()
        .map(|l| if l.starts_with("kind:") { "#" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut docs = Vec::new();
    for f in &a.files {
        let text = read(f)?;
        docs.extend(parse(&f.display().to_string(), &text)?);
    }
    let c = Client::new(&a.remote)?;
    let mut agents = c.list_all("/v1/agents").await?;
    let envs = c.list_all("/v1/environments").await?;
    for d in docs {
        match d {
            Doc::Agent(spec) => {
                if spec.multiagent.is_some() {
                    // Its roster may name agents made earlier in this run.
                    agents = c.list_all("/v1/agents").await?;
                }
                apply_agent(&c, &agents, *spec).await?
            }
            Doc::Environment(spec) => apply_environment(&c, &envs, *spec).await?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(f: &Path) -> anyhow::Result<String> {
    let bytes = if f == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
    };
    if bytes.len() > MAX_FILE_BYTES {
        bail!("{}: larger than {MAX_FILE_BYTES} bytes", f.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", f.display()))
}

fn named<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|v| v["name"].as_str() == Some(name))
}

/// A roster whose entries may name agents: each name becomes that agent's id.
fn by_name(m: MultiagentParams, agents: &[Value]) -> anyhow::Result<MultiagentParams> {
    let MultiagentParams::Coordinator { agents: entries } = m else {
        return Ok(m);
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        out.push(match e {
            RosterParam::Id(key) if !key.starts_with("agent_") => {
                let id = named(agents, &key)
                    .and_then(|a| a["id"].as_str())
                    .with_context(|| {
                        format!(
                            "multiagent.agents[{i}]: no agent named {key:?}; declare it earlier in the file or give its id"
                        )
                    })?;
                RosterParam::Id(id.to_owned())
            }
            other => other,
        });
    }
    Ok(MultiagentParams::Coordinator { agents: out })
}

async fn apply_agent(c: &Client, existing: &[Value], a: CreateAgent) -> anyhow::Result<()> {
    let (spec, roster) = a.into_parts();
    let name = spec.name.clone();
    let mut body = serde_json::to_value(&spec)?;
    // The server pins the roster; agents named rather than given by id are looked up here.
    body["multiagent"] = serde_json::to_value(
        roster
            .map(|r| by_name(r, existing))
            .transpose()
            .with_context(|| format!("agent {name:?}"))?,
    )?;
    match named(existing, &name) {
        None => {
            let created: Value = c
                .post("/v1/agents", &body)
                .await
                .with_context(|| format!("agent {name:?}"))?;
            println!(
                "agent {name:?} created ({}, version 1)",
                created["id"].as_str().unwrap_or("?")
            );
        }
        Some(cur) => {
            let id = cur["id"].as_str().unwrap_or_default();
            let version = cur["version"].as_u64().unwrap_or(0);
            // Metadata keys the file no longer names are removed.
            if let (Some(new), Some(old)) = (
                body["metadata"].as_object_mut(),
                cur["metadata"].as_object(),
            ) {
                for k in old.keys() {
                    new.entry(k.clone()).or_insert(Value::Null);
                }
            }
            body["version"] = json!(version);
            let updated: Value = c
                .post(&format!("/v1/agents/{id}"), &body)
                .await
                .with_context(|| format!("agent {name:?}"))?;
            let v = updated["version"].as_u64().unwrap_or(0);
            if v == version {
                println!("agent {name:?} unchanged ({id}, version {v})");
            } else {
                println!("agent {name:?} updated ({id}, version {version} -> {v})");
            }
        }
    }
    Ok(())
}

async fn apply_environment(
    c: &Client,
    existing: &[Value],
    e: CreateEnvironment,
) -> anyhow::Result<()> {
    let name = e.name.clone();
    let mut body = json!({
        "name": e.name,
        "description": e.description,
        "config": e.config.map(|c| c.apply(None)).unwrap_or_default(),
        "metadata": e.metadata,
    });
    if let Some(scope) = e.scope {
        body["scope"] = serde_json::to_value(scope)?;
    }
    match named(existing, &name) {
        None => {
            let created: Value = c
                .post("/v1/environments", &body)
                .await
                .with_context(|| format!("environment {name:?}"))?;
            println!(
                "environment {name:?} created ({})",
                created["id"].as_str().unwrap_or("?")
            );
        }
        Some(cur) => {
            let id = cur["id"].as_str().unwrap_or_default();
            let same = ["description", "config", "metadata"]
                .iter()
                .all(|k| cur[*k] == body[*k]);
            if same {
                println!("environment {name:?} unchanged ({id})");
                return Ok(());
            }
            if let (Some(new), Some(old)) = (
                body["metadata"].as_object_mut(),
                cur["metadata"].as_object(),
            ) {
                for k in old.keys() {
                    new.entry(k.clone()).or_insert(Value::Null);
                }
            }
            c.post::<Value>(&format!("/v1/environments/{id}"), &body)
                .await
                .with_context(|| format!("environment {name:?}"))?;
            println!("environment {name:?} updated ({id})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_many_documents() {
        let docs = parse(
            "a.yaml",
            "kind: agent\nname: a\nmodel: scripted/echo\nsystem: be brief\n---\nkind: environment\nname: e\nconfig:\n  type: cloud\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert!(matches!(&docs[0], Doc::Agent(a) if a.name == "a"));
        assert!(matches!(&docs[1], Doc::Environment(e) if e.name == "e"));
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let e = parse(
            "agents.yaml",
            "kind: environment\nname: x\n---\nkind: agent\nname: a\nmodel: scripted/echo\nsytem: typo\n",
        )
        .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("agents.yaml", 7), "{e}");
        assert!(e.message.contains("sytem"), "{e}");
        assert!(e.message.contains("expected one of"), "{e}");

        let e = parse(
            "b.yaml",
            "kind: agent\nname: a\nmodel: m\ntools:\n  - type: custom\n    name: t\n",
        )
        .unwrap_err();
        assert!(e.message.contains("tools"), "{e}");
        assert!(e.message.contains("description"), "{e}");

        let e = parse("c.yaml", "kind: robot\nname: a\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("robot"));

        let e = parse("d.yaml", "kind: agent\nname: a\nmodel: m\nmetadata: 5\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 11), "{e}");
        assert!(e.message.starts_with("metadata: invalid type"), "{e}");
        assert!(e.message.contains("expected a map"), "{e}");
    }
}
