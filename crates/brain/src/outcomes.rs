//! Outcomes: the outcome a session works toward as the fold rebuilds it, and the grader's side
//! of the conversation: its instructions, the view of the work it is given (the agent's answer
//! and the workspace files the rubric names — never the agent's reasoning), and reading its
//! verdict leniently. Depends on nothing else of the brain, so the fold can use it.

use std::path::{Component, Path};

use serde_json::Value;

use agentd_wire::event::{Check, OutcomeResult};

/// The outcome the session works toward, as far as the log says.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub description: String,
    pub rubric: String,
    /// Exact checks run before the model grader.
    pub checks: Vec<Check>,
    pub max_iterations: u32,
    /// The iteration of the next (or the open) evaluation.
    pub iteration: u32,
    /// An evaluation whose start was logged and whose end was not.
    pub open_eval: Option<String>,
    /// The agent's latest message since the outcome was defined: the work to grade.
    pub answer: String,
    /// Still being worked on and graded.
    pub active: bool,
}

/// Verdicts a grader may give; the harness adds `max_iterations_reached` and `interrupted`.
const VERDICTS: &[OutcomeResult] = &[
    OutcomeResult::Satisfied,
    OutcomeResult::NeedsRevision,
    OutcomeResult::Failed,
];

pub fn grader_system() -> String {
    format!(
        "{} You see the outcome, its rubric and what the agent produced, never its reasoning. \
         Be strict: the outcome is met only when every criterion of the rubric is.",
        agentd_models::GRADER_SYSTEM_PREFIX
    )
}

pub fn grader_prompt(o: &Outcome, files: &str) -> String {
    let answer = if o.answer.trim().is_empty() {
        "(no text answer)"
    } else {
        o.answer.as_str()
    };
    format!(
        "Evaluation iteration: {}\n\nOutcome: {}\n\nRubric:\n{}\n\nThe agent's latest answer:\n{answer}\n\n{files}\
         Judge only against the rubric. Reply with one JSON object and nothing else:\n\
         {{\"result\": \"satisfied\" | \"needs_revision\" | \"failed\", \"explanation\": \"which criteria pass or fail, and why\"}}\n\
         Use \"failed\" only when the rubric cannot apply to this work at all.",
        o.iteration, o.description, o.rubric
    )
}

/// Workspace entries listed for the grader, files shown, and bytes shown per file.
pub const MAX_LISTED: usize = 200;
pub const MAX_SHOWN: usize = 8;
pub const MAX_FILE: usize = 32 * 1024;

/// Whether a listed workspace path is worth showing the grader: not tool caches.
pub fn listable(rel: &str) -> bool {
    !rel.split('/').any(|c| {
        matches!(
            c,
            ".git" | ".venv" | ".cache" | ".agentd" | "node_modules" | ".npm-global"
        )
    })
}

/// Whether the outcome or its rubric names `rel` (by path or file name).
pub fn mentioned(o: &Outcome, rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    [&o.description, &o.rubric]
        .iter()
        .any(|t| t.contains(rel) || t.contains(name))
}

/// The verdict and explanation in a grader's reply: its JSON object if it wrote one, else the
/// verdict word it used, else `needs_revision` with the reply as the explanation.
pub fn parse_verdict(text: &str) -> (OutcomeResult, String) {
    #[derive(serde::Deserialize)]
    struct Verdict {
        result: String,
        #[serde(default)]
        explanation: String,
    }
    if let (Some(a), Some(b)) = (text.find('{'), text.rfind('}'))
        && a < b
        && let Ok(v) = serde_json::from_str::<Verdict>(&text[a..=b])
        && let Some(result) = VERDICTS.iter().find(|r| r.as_str() == v.result)
    {
        return (*result, v.explanation);
    }
    let lower = text.to_ascii_lowercase();
    let result = VERDICTS
        .iter()
        .find(|v| lower.contains(v.as_str()))
        .copied()
        .unwrap_or(OutcomeResult::NeedsRevision);
    (result, text.chars().take(4000).collect())
}

/// The exact checks, told to the agent with the outcome so it knows what will be verified.
pub fn describe_checks(checks: &[Check]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n\nThese exact checks must also pass:");
    for c in checks {
        match c {
            Check::Command { command } => {
                s.push_str(&format!("\n- the command `{command}` exits 0"))
            }
            Check::JsonSchema { file, schema } => {
                s.push_str(&format!("\n- {file} satisfies this JSON Schema: {schema}"))
            }
        }
    }
    s
}

/// Why a check command failed, from what its run reported; None when it exited 0.
pub fn command_failure(command: &str, out: &agentd_hands::Output) -> Option<String> {
    match out.exit_code {
        Some(0) if !out.is_error => None,
        Some(c) => Some(format!("`{command}` exited {c}: {}", tail(&out.text))),
        None => Some(format!("`{command}` did not finish: {}", tail(&out.text))),
    }
}

fn tail(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    chars[chars.len().saturating_sub(800)..].iter().collect()
}

/// `file` as a plain relative path inside the workspace, or why it is not one.
pub fn plain_path(file: &str) -> Result<&Path, String> {
    let rel = Path::new(file);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{file}: must be a plain path inside the workspace"));
    }
    Ok(rel)
}

/// Why the content of `file` fails `schema`; None when it satisfies it.
pub fn content_failure(file: &str, text: &str, schema: &Value) -> Option<String> {
    let value = match parse_structured(file, text) {
        Ok(v) => v,
        Err(e) => return Some(format!("{file}: {e}")),
    };
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return Some(format!("{file}: the check's schema is invalid: {e}")),
    };
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .take(10)
        .map(|e| {
            let at = e.instance_path().as_str();
            format!("at {}: {e}", if at.is_empty() { "/" } else { at })
        })
        .collect();
    if errors.is_empty() {
        None
    } else {
        Some(format!(
            "{file} does not satisfy its schema: {}",
            errors.join("; ")
        ))
    }
}

/// Why `file` in a workspace on this host fails `schema`, read without following symlinks —
/// for tools outside the harness (the outcomes bench). The harness reads through the sandbox.
pub fn schema_failure(workspace: &Path, file: &str, schema: &Value) -> Option<String> {
    let rel = match plain_path(file) {
        Ok(r) => r,
        Err(e) => return Some(e),
    };
    let mut at = workspace.to_owned();
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(format!("{file}: is or passes through a symlink; refused"));
        }
    }
    match std::fs::read_to_string(&at) {
        Ok(text) => content_failure(file, &text, schema),
        Err(e) => Some(format!("{file}: cannot be read: {e}")),
    }
}

/// JSON, YAML, or CSV (rows of objects keyed by the header; numbers and booleans typed).
fn parse_structured(file: &str, text: &str) -> Result<Value, String> {
    let ext = Path::new(file)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => yaml_serde::from_str(text).map_err(|e| format!("not valid YAML: {e}")),
        "csv" => parse_csv(text),
        _ => serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}")),
    }
}

fn parse_csv(text: &str) -> Result<Value, String> {
    let mut rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(split_csv_line);
    let header = rows.next().ok_or("empty CSV: no header row")??;
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let row = row?;
        if row.len() != header.len() {
            return Err(format!(
                "CSV row {} has {} fields, the header {}",
                n + 2,
                row.len(),
                header.len()
            ));
        }
        let obj: serde_json::Map<String, Value> = header
            .iter()
            .zip(row)
            .map(|(k, v)| {
                let typed = v
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| v.parse::<f64>().map(Value::from))
                    .or_else(|_| v.parse::<bool>().map(Value::from))
                    .unwrap_or(Value::String(v));
                (k.clone(), typed)
            })
            .collect();
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

/// One CSV line with RFC 4180 quoting (`"a,b"`, `""` for a quote).
fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unclosed quote in CSV line {line:?}"));
    }
    fields.push(cur);
    Ok(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_checks_read_json_yaml_and_csv() {
        let d = tempfile::tempdir().unwrap();
        let schema = serde_json::json!({"type": "array", "items": {"type": "object",
            "required": ["name", "age"], "properties": {"age": {"type": "integer", "minimum": 0}}}});
        std::fs::write(d.path().join("ok.csv"), "name,age\n\"Doe, J\",42\n").unwrap();
        assert_eq!(schema_failure(d.path(), "ok.csv", &schema), None);
        std::fs::write(d.path().join("bad.yaml"), "- name: a\n  age: -1\n").unwrap();
        let e = schema_failure(d.path(), "bad.yaml", &schema).unwrap();
        assert!(e.contains("at /0/age"), "{e}");
        std::fs::write(d.path().join("x.json"), "{not json").unwrap();
        assert!(
            schema_failure(d.path(), "x.json", &schema)
                .unwrap()
                .contains("not valid JSON")
        );
        assert!(
            schema_failure(d.path(), "missing.json", &schema)
                .unwrap()
                .contains("cannot be read")
        );
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("link.json")).unwrap();
        assert!(
            schema_failure(d.path(), "link.json", &schema)
                .unwrap()
                .contains("symlink")
        );
        assert!(
            schema_failure(d.path(), "../etc/passwd", &schema)
                .unwrap()
                .contains("inside the workspace")
        );
    }

    #[test]
    fn check_commands_report_their_exit() {
        use agentd_hands::Output;
        let exited = |text: &str, code| Output {
            exit_code: Some(code),
            ..Output::ok(text)
        };
        assert_eq!(command_failure("true", &exited("ok", 0)), None);
        // The status is data: output that looks like a success marker changes nothing.
        let e = command_failure("test -f x", &exited("__AGENTD_CHECK_EXIT=0", 1)).unwrap();
        assert!(e.contains("exited 1"), "{e}");
        assert!(
            command_failure("sleep 9", &Output::error("[timed out]"))
                .unwrap()
                .contains("did not finish")
        );
    }

    #[test]
    fn verdicts_are_read_leniently() {
        assert_eq!(
            parse_verdict("Sure. {\"result\": \"satisfied\", \"explanation\": \"all good\"}"),
            (OutcomeResult::Satisfied, "all good".into())
        );
        assert_eq!(
            parse_verdict("needs_revision: the CSV lacks a header").0,
            OutcomeResult::NeedsRevision
        );
        assert_eq!(
            parse_verdict("I cannot tell").0,
            OutcomeResult::NeedsRevision
        );
        assert_eq!(
            parse_verdict("{\"result\": \"great\"}").0,
            OutcomeResult::NeedsRevision
        );
    }
}
