//! The outcome grader's side of the conversation: its instructions, the view of the work it
//! is given (the agent's answer and the workspace files the rubric names — never the agent's
//! reasoning), and reading its verdict leniently.

use std::path::Path;

use crate::context::Outcome;

/// Verdicts a grader may give; the harness adds `max_iterations_reached` and `interrupted`.
const VERDICTS: &[&str] = &["satisfied", "needs_revision", "failed"];
/// Workspace entries listed, files shown, and bytes shown per file.
const MAX_LISTED: usize = 200;
const MAX_SHOWN: usize = 8;
const MAX_FILE: u64 = 32 * 1024;

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

/// The workspace as the grader sees it: a listing, and the contents of files the outcome or
/// its rubric mention by name.
pub async fn workspace_view(dir: &Path, o: &Outcome) -> String {
    let dir = dir.to_owned();
    let mention = format!("{}\n{}", o.description, o.rubric);
    tokio::task::spawn_blocking(move || {
        let mut listed = Vec::new();
        let mut shown = String::new();
        let mut n_shown = 0;
        let entries = walkdir::WalkDir::new(&dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                !matches!(
                    e.file_name().to_str(),
                    Some(".git" | ".venv" | ".cache" | ".agentd" | "node_modules")
                )
            })
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .take(MAX_LISTED);
        for e in entries {
            let Ok(rel) = e.path().strip_prefix(&dir) else {
                continue;
            };
            let rel = rel.display().to_string();
            let name = e.file_name().to_string_lossy().into_owned();
            listed.push(rel.clone());
            let small = e.metadata().is_ok_and(|m| m.len() <= MAX_FILE);
            if n_shown < MAX_SHOWN
                && small
                && (mention.contains(&rel) || mention.contains(&name))
                && let Ok(text) = std::fs::read_to_string(e.path())
            {
                shown.push_str(&format!("--- {rel} ---\n{text}\n"));
                n_shown += 1;
            }
        }
        if listed.is_empty() {
            return String::new();
        }
        format!(
            "Files in the workspace:\n{}\n\n{shown}\n",
            listed.join("\n")
        )
    })
    .await
    .unwrap_or_default()
}

/// The verdict and explanation in a grader's reply: its JSON object if it wrote one, else the
/// verdict word it used, else `needs_revision` with the reply as the explanation.
pub fn parse_verdict(text: &str) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Verdict {
        result: String,
        #[serde(default)]
        explanation: String,
    }
    if let (Some(a), Some(b)) = (text.find('{'), text.rfind('}'))
        && a < b
        && let Ok(v) = serde_json::from_str::<Verdict>(&text[a..=b])
        && VERDICTS.contains(&v.result.as_str())
    {
        return (v.result, v.explanation);
    }
    let lower = text.to_ascii_lowercase();
    let result = VERDICTS
        .iter()
        .find(|v| lower.contains(*v))
        .copied()
        .unwrap_or("needs_revision");
    (result.to_owned(), text.chars().take(4000).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_leniently() {
        assert_eq!(
            parse_verdict("Sure. {\"result\": \"satisfied\", \"explanation\": \"all good\"}"),
            ("satisfied".into(), "all good".into())
        );
        assert_eq!(
            parse_verdict("needs_revision: the CSV lacks a header").0,
            "needs_revision"
        );
        assert_eq!(parse_verdict("I cannot tell").0, "needs_revision");
        assert_eq!(parse_verdict("{\"result\": \"great\"}").0, "needs_revision");
    }
}
