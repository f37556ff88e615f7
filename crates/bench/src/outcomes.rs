//! `agentd-bench outcomes`: does defining an outcome help? A fixed suite of structured-file
//! tasks (JSON, CSV, YAML, each with a JSON Schema) runs twice per model: once as a plain
//! request, once as an outcome whose rubric checks the file against its schema. Success is the
//! file satisfying its schema at the end; the bench prints both rates and the difference.
//!
//! With the default scripted model every task's script first writes a flawed file, then a
//! correct one when asked to revise — so the run shows the mechanism working end to end in CI,
//! not a model's skill. With a real model (`--model claude-…` and AGENTD_ANTHROPIC_API_KEY) it
//! measures the real effect.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use agentd_brain::HarnessConfig;
use agentd_hands::bwrap::{Bwrap, HelperCommand};
use agentd_models::RegistryConfig;
use agentd_testkit::world::World;
use agentd_wire::EventBody;
use agentd_wire::event::{Check, Rubric};

#[derive(clap::Args)]
pub struct Args {
    /// The model to run; `scripted` uses a per-task script (flawed file, then a fix).
    #[arg(long, default_value = "scripted")]
    model: String,
    /// Evaluate-then-revise cycles allowed with an outcome.
    #[arg(long, default_value_t = 3)]
    max_iterations: u32,
    /// How long one task may take.
    #[arg(long, default_value_t = 600)]
    task_timeout_secs: u64,
}

struct Task {
    file: &'static str,
    prompt: &'static str,
    schema: Value,
    /// What a correct file looks like, and a plausible wrong one (for the scripted model).
    good: &'static str,
    bad: &'static str,
}

#[expect(
    clippy::too_many_lines,
    reason = "a table of the suite's tasks, one entry each; splitting it would only scatter the data"
)]
fn tasks() -> Vec<Task> {
    let people = json!({"type": "array", "minItems": 3, "items": {"type": "object", "required": ["name", "age"], "additionalProperties": false,
        "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}}}});
    let mut t = vec![
        Task {
            file: "people.json",
            prompt: "Write people.json: a JSON array of 3 people, each an object with only `name` (string) and `age` (integer).",
            schema: people,
            good: r#"[{"name":"Ada","age":36},{"name":"Alan","age":41},{"name":"Grace","age":85}]"#,
            bad: r#"[{"name":"Ada","age":"36"},{"name":"Alan","age":41}]"#,
        },
        Task {
            file: "config.json",
            prompt: "Write config.json: an object with `port` (integer 1-65535), `host` (string) and `debug` (boolean).",
            schema: json!({"type":"object","required":["port","host","debug"],"properties":{"port":{"type":"integer","minimum":1,"maximum":65535},"host":{"type":"string"},"debug":{"type":"boolean"}}}),
            good: r#"{"port":8080,"host":"localhost","debug":false}"#,
            bad: r#"{"port":"8080","host":"localhost"}"#,
        },
        Task {
            file: "inventory.json",
            prompt: "Write inventory.json: an object mapping 3 product SKUs (like \"SKU-001\") to integer stock counts.",
            schema: json!({"type":"object","minProperties":3,"propertyNames":{"pattern":"^SKU-[0-9]{3}$"},"additionalProperties":{"type":"integer","minimum":0}}),
            good: r#"{"SKU-001":4,"SKU-002":0,"SKU-003":12}"#,
            bad: r#"{"sku1":4,"SKU-002":-1}"#,
        },
        Task {
            file: "todo.json",
            prompt: "Write todo.json: an array of 2 tasks with `title` (string) and `done` (boolean).",
            schema: json!({"type":"array","minItems":2,"items":{"type":"object","required":["title","done"],"properties":{"title":{"type":"string"},"done":{"type":"boolean"}}}}),
            good: r#"[{"title":"write","done":true},{"title":"test","done":false}]"#,
            bad: r#"[{"title":"write","done":"yes"}]"#,
        },
        Task {
            file: "point.json",
            prompt: "Write point.json: an object with numeric `x`, `y` and a `label` string.",
            schema: json!({"type":"object","required":["x","y","label"],"properties":{"x":{"type":"number"},"y":{"type":"number"},"label":{"type":"string"}}}),
            good: r#"{"x":1.5,"y":-2,"label":"A"}"#,
            bad: r#"{"x":1.5,"label":"A"}"#,
        },
        Task {
            file: "colors.json",
            prompt: "Write colors.json: an array of 3 hex colour strings like \"#1a2b3c\".",
            schema: json!({"type":"array","minItems":3,"items":{"type":"string","pattern":"^#[0-9a-fA-F]{6}$"}}),
            good: r##"["#ff0000","#00ff00","#0000ff"]"##,
            bad: r##"["red","#00ff00"]"##,
        },
        Task {
            file: "event.json",
            prompt: "Write event.json: an object with `name` (string), `date` (YYYY-MM-DD) and `attendees` (array of strings, at least 1).",
            schema: json!({"type":"object","required":["name","date","attendees"],"properties":{"name":{"type":"string"},"date":{"type":"string","pattern":"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},"attendees":{"type":"array","minItems":1,"items":{"type":"string"}}}}),
            good: r#"{"name":"launch","date":"2026-12-01","attendees":["ada"]}"#,
            bad: r#"{"name":"launch","date":"Dec 1","attendees":[]}"#,
        },
        Task {
            file: "matrix.json",
            prompt: "Write matrix.json: a 2x2 matrix as an array of 2 arrays of 2 numbers.",
            schema: json!({"type":"array","minItems":2,"maxItems":2,"items":{"type":"array","minItems":2,"maxItems":2,"items":{"type":"number"}}}),
            good: r#"[[1,0],[0,1]]"#,
            bad: r#"[[1,0,0],[0,1]]"#,
        },
    ];
    let rows = |cols: &[(&str, &str)]| {
        let props: serde_json::Map<String, Value> = cols
            .iter()
            .map(|(k, ty)| ((*k).to_owned(), json!({"type": ty})))
            .collect();
        let req: Vec<&str> = cols.iter().map(|(k, _)| *k).collect();
        json!({"type":"array","minItems":2,"items":{"type":"object","required":req,"properties":props}})
    };
    t.extend([
        Task { file: "scores.csv", prompt: "Write scores.csv with a header `name,score` and 2 rows; score is an integer.", schema: rows(&[("name","string"),("score","integer")]),
            good: "name,score\nada,90\nalan,85\n", bad: "name;score\nada;ninety\n" },
        Task { file: "cities.csv", prompt: "Write cities.csv with header `city,population` and 2 rows; population an integer.", schema: rows(&[("city","string"),("population","integer")]),
            good: "city,population\nParis,2100000\nLyon,520000\n", bad: "city,population\nParis,2.1M\n" },
        Task { file: "prices.csv", prompt: "Write prices.csv with header `item,price` and 2 rows; price a number.", schema: rows(&[("item","string"),("price","number")]),
            good: "item,price\ntea,2.5\ncoffee,3\n", bad: "item,price\ntea,cheap\ncoffee\n" },
        Task { file: "flags.csv", prompt: "Write flags.csv with header `feature,enabled` and 2 rows; enabled is true or false.", schema: rows(&[("feature","string"),("enabled","boolean")]),
            good: "feature,enabled\nbeta,true\ndark,false\n", bad: "feature,enabled\nbeta,yes\ndark,no\n" },
        Task { file: "grades.csv", prompt: "Write grades.csv with header `student,grade,passed` and 2 rows (grade integer, passed boolean).", schema: rows(&[("student","string"),("grade","integer"),("passed","boolean")]),
            good: "student,grade,passed\nada,18,true\nbob,8,false\n", bad: "student,grade\nada,18\n" },
        Task { file: "temps.csv", prompt: "Write temps.csv with header `day,celsius` and 2 rows; celsius a number.", schema: rows(&[("day","string"),("celsius","number")]),
            good: "day,celsius\nmon,12.5\ntue,14\n", bad: "day,celsius\nmon,warm\n" },
        Task { file: "service.yaml", prompt: "Write service.yaml: a mapping with `name` (string), `replicas` (integer ≥ 1) and `ports` (list of integers).",
            schema: json!({"type":"object","required":["name","replicas","ports"],"properties":{"name":{"type":"string"},"replicas":{"type":"integer","minimum":1},"ports":{"type":"array","items":{"type":"integer"}}}}),
            good: "name: web\nreplicas: 2\nports: [80, 443]\n", bad: "name: web\nreplicas: 0\nports: http\n" },
        Task { file: "users.yaml", prompt: "Write users.yaml: a list of 2 users, each with `login` (string) and `admin` (boolean).",
            schema: json!({"type":"array","minItems":2,"items":{"type":"object","required":["login","admin"],"properties":{"login":{"type":"string"},"admin":{"type":"boolean"}}}}),
            good: "- login: ada\n  admin: true\n- login: bob\n  admin: false\n", bad: "- login: ada\n  admin: maybe\n" },
        Task { file: "build.yaml", prompt: "Write build.yaml: `steps`, a list of at least 2 strings, and `timeout` (integer seconds).",
            schema: json!({"type":"object","required":["steps","timeout"],"properties":{"steps":{"type":"array","minItems":2,"items":{"type":"string"}},"timeout":{"type":"integer"}}}),
            good: "steps: [fetch, test]\ntimeout: 600\n", bad: "steps: fetch\ntimeout: 10m\n" },
        Task { file: "limits.yaml", prompt: "Write limits.yaml: `cpu` (number ≤ 8) and `memory_mb` (integer ≥ 64).",
            schema: json!({"type":"object","required":["cpu","memory_mb"],"properties":{"cpu":{"type":"number","maximum":8},"memory_mb":{"type":"integer","minimum":64}}}),
            good: "cpu: 1.5\nmemory_mb: 512\n", bad: "cpu: 16\nmemory_mb: 32\n" },
        Task { file: "menu.yaml", prompt: "Write menu.yaml: a list of 2 dishes with `dish` (string) and `price` (number).",
            schema: json!({"type":"array","minItems":2,"items":{"type":"object","required":["dish","price"],"properties":{"dish":{"type":"string"},"price":{"type":"number"}}}}),
            good: "- dish: soup\n  price: 6.5\n- dish: pie\n  price: 4\n", bad: "- dish: soup\n" },
        Task { file: "release.yaml", prompt: "Write release.yaml: `version` (semver string like 1.2.3) and `notes` (non-empty string).",
            schema: json!({"type":"object","required":["version","notes"],"properties":{"version":{"type":"string","pattern":"^[0-9]+\\.[0-9]+\\.[0-9]+$"},"notes":{"type":"string","minLength":1}}}),
            good: "version: 1.2.3\nnotes: first release\n", bad: "version: v1.2\nnotes: ''\n" },
    ]);
    t
}

fn script(task: &Task) -> String {
    let write = |content: &str| {
        format!(
            "  - tool_use: {{name: write, input: {{file_path: {}, content: {}}}}}\n",
            task.file,
            serde_json::to_string(content).unwrap_or_default()
        )
    };
    format!(
        "turns:\n{}  - text: wrote it\n{}  - text: fixed it\n",
        write(task.bad),
        write(task.good)
    )
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let helper = HelperCommand {
        exe: std::env::current_exe()?,
        args: vec!["sandbox-helper".into()],
    };
    let registry = RegistryConfig {
        anthropic_base_url: std::env::var("AGENTD_ANTHROPIC_BASE_URL")
            .unwrap_or_else(|_| "https://api.anthropic.com".into()),
        anthropic_api_key: std::env::var("AGENTD_ANTHROPIC_API_KEY").ok(),
        scripts_dir: Default::default(),
    };
    let w = World::start_with_registry(
        registry,
        json!({"name": "unused", "model": "scripted/echo"}),
        HarnessConfig::default(),
        Some(Arc::new(Bwrap::new(helper)?)),
    )
    .await;
    let sandboxes = w.sandboxes().context("sandboxes")?;
    let tasks = tasks();
    let mut wins = [0usize; 2];
    for (i, task) in tasks.iter().enumerate() {
        let model = if a.model == "scripted" {
            std::fs::write(w.scripts_dir().join(format!("task{i}.yaml")), script(task))?;
            format!("scripted/task{i}")
        } else {
            a.model.clone()
        };
        for (mode, with_outcome) in [(0, false), (1, true)] {
            let sid = w.session_for(json!({"name": format!("task{i}"), "model": model, "tools": [{"type": "agent_toolset_20260401"}]})).await;
            let prompt = format!("{} Write the file in the current directory.", task.prompt);
            let body = if with_outcome {
                EventBody::UserDefineOutcome {
                    outcome_id: agentd_wire::ids::new(agentd_wire::ids::Kind::Outcome),
                    description: prompt,
                    rubric: Rubric::Text {
                        content: String::new(),
                        checks: vec![Check::JsonSchema {
                            file: task.file.into(),
                            schema: task.schema.clone(),
                        }],
                    },
                    max_iterations: Some(a.max_iterations),
                }
            } else {
                EventBody::UserMessage {
                    content: vec![agentd_wire::ContentBlock::text(prompt)],
                }
            };
            w.send(&sid, vec![body]).await;
            w.settle(&sid, Duration::from_secs(a.task_timeout_secs))
                .await;
            let ok = agentd_brain::outcomes::schema_failure(
                &sandboxes.workspace(&sid),
                task.file,
                &task.schema,
            )
            .is_none();
            wins[mode] += usize::from(ok);
            sandboxes.destroy(&sid).await;
        }
    }
    let n = tasks.len();
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    println!(
        "structured-file tasks ({n}: 8 JSON, 6 CSV, 6 YAML, each with a JSON Schema), model {}:",
        a.model
    );
    println!(
        "  without an outcome: {}/{n} ({:.0}%)",
        wins[0],
        pct(wins[0])
    );
    println!(
        "  with an outcome (schema check, up to {} iterations): {}/{n} ({:.0}%)",
        a.max_iterations,
        wins[1],
        pct(wins[1])
    );
    println!("  difference: {:+.0} points", pct(wins[1]) - pct(wins[0]));
    if a.model == "scripted" {
        println!(
            "  (scripted: each script writes a flawed file, then a fixed one when asked to revise; this shows the loop works, not a model's skill)"
        );
        // Every flawed file must fail its schema and every fix pass it, or the loop is broken.
        anyhow::ensure!(
            wins == [0, n],
            "the scripted run should give 0/{n} and {n}/{n}, got {wins:?}"
        );
    }
    Ok(())
}
