//! The local model: load time, prompt reading and answer writing speed, on this machine's CPU.

use std::path::PathBuf;
use std::time::Duration;

use agentd_local::Local;
use agentd_models::{Block, LocalModels, Message, Purpose, Request, Role};

#[derive(clap::Args)]
pub struct Args {
    /// The model, as in `local/<name>`.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Where local models live (default: agentd's models cache).
    #[arg(long, env = "AGENTD_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Answers to time.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Tokens each answer may have.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let dir = a
        .models_dir
        .clone()
        .unwrap_or_else(agentd_local::default_models_dir);
    let local = Local::new(&dir, agentd_local::DEFAULT_CONTEXT);
    local.check(&a.model).map_err(anyhow::Error::msg)?;
    let request = |text: &str| Request {
        model: a.model.clone(),
        system: Some("You are a helpful assistant.".into()),
        messages: vec![Message {
            role: Role::User,
            content: vec![Block::Text { text: text.into() }],
        }],
        tools: vec![],
        max_tokens: a.max_tokens,
        purpose: Purpose::Turn,
    };
    println!(
        "local/{} on {} cores, {}-token answers, {} runs",
        a.model,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a.max_tokens,
        a.runs
    );
    let mut load = Duration::ZERO;
    let mut rates = Vec::new();
    let mut total = Duration::ZERO;
    // Before the first token: template, tokens, a fresh context and reading the prompt.
    let mut firsts = Vec::new();
    let mut prompt_tokens = 0;
    for i in 0..a.runs {
        let q = format!("Write a short essay about the number {i}.");
        let started = std::time::Instant::now();
        let (_, t) = local.timed(&request(&q), &mut |_| {}).await?;
        let whole = started.elapsed();
        if t.load > Duration::ZERO {
            load = t.load;
        }
        total += whole;
        rates.push(t.output_tokens as f64 / t.decode.as_secs_f64());
        let first = whole.saturating_sub(t.decode).saturating_sub(t.load);
        firsts.push(first.as_secs_f64() * 1000.0);
        prompt_tokens = t.input_tokens;
    }
    rates.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    let mid = |v: &[f64]| v[v.len() / 2];
    println!(
        "load (first call):        {:.0} ms",
        load.as_secs_f64() * 1000.0
    );
    println!(
        "writing the answer:       {:.1} tokens/s (median; min {:.1}, max {:.1})",
        mid(&rates),
        rates[0],
        rates[rates.len() - 1]
    );
    println!(
        "first token after:        {:.0} ms (median; a {prompt_tokens}-token prompt)",
        mid(&firsts)
    );
    println!(
        "whole answers:            {:.2} s each on average",
        total.as_secs_f64() / a.runs as f64
    );
    Ok(())
}
