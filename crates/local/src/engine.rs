//! Generation with llama.cpp: load a GGUF file once, then for each request render the chat
//! template, fit the prompt in the context window, and decode greedily on the CPU.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentd_models::{Delta, Error, Request, StopReason, Usage};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::{BatchAddError, LlamaBatch};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::prompt::{self, CALL_CLOSE, CALL_OPEN, Turn};

/// Tokens decoded per batch while reading the prompt.
const BATCH: usize = 512;
/// Room always left for the answer when the prompt is fitted into the window.
const MIN_ANSWER: usize = 256;

/// llama.cpp's process-wide state, made once; its own logging is silenced (agentd logs what
/// matters through tracing).
fn backend() -> Result<&'static LlamaBackend, Error> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| Error::Rejected {
            status: 500,
            message: format!("llama.cpp failed to start: {e}"),
        })
}

/// A model held in memory.
pub struct Loaded {
    model: LlamaModel,
    pub load_time: Duration,
}

pub fn load(path: &Path) -> Result<Loaded, Error> {
    let backend = backend()?;
    let started = Instant::now();
    let model =
        LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| {
            Error::Rejected {
                status: 500,
                message: format!("cannot load the model {}: {e}", path.display()),
            }
        })?;
    Ok(Loaded {
        model,
        load_time: started.elapsed(),
    })
}

/// What one generation produced.
pub struct Generated {
    pub text: String,
    pub stop: StopReason,
    pub usage: Usage,
    /// Time spent writing the answer, prompt reading excluded.
    pub decode_time: Duration,
}

/// Answer `req` with the model, reporting streamed text through `on_delta`. Runs on the
/// calling thread until done, cut short when `cancel` is set.
pub fn generate(
    m: &Loaded,
    req: &Request,
    n_ctx: u32,
    cancel: &AtomicBool,
    on_delta: &mut dyn FnMut(Delta),
) -> Result<Generated, Error> {
    let backend = backend()?;
    let model = &m.model;
    let window = n_ctx.min(model.n_ctx_train().max(512)) as usize;
    let tokens = fit_prompt(model, req, window, cancel)?;
    let (mut ctx, mut batch) = read_prompt(model, backend, window, &tokens, cancel)?;
    on_delta(Delta::Started);
    let budget = (req.max_tokens as usize).min(window - tokens.len());
    decode(
        model,
        &mut ctx,
        &mut batch,
        tokens.len(),
        budget,
        cancel,
        on_delta,
    )
}

/// The prompt's tokens, leaving at least `MIN_ANSWER` of the window for the answer.
fn fit_prompt(
    model: &LlamaModel,
    req: &Request,
    window: usize,
    cancel: &AtomicBool,
) -> Result<Vec<LlamaToken>, Error> {
    let vocab = model.vocab();
    let mut turns = prompt::turns(req);
    // Drop the oldest turns (never the system prompt or the last) until the prompt fits; when
    // what is left is still too long (a huge tool result), cut the middle out of the longest.
    let tokens = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let text = render(model, &turns);
        let tokens = vocab.tokenize(text.as_bytes(), true, true);
        if tokens.len() + MIN_ANSWER <= window {
            break tokens;
        }
        let first = usize::from(turns.first().is_some_and(|t| t.role == "system"));
        if turns.len() > first + 1 {
            turns.remove(first);
            continue;
        }
        let Some(longest) = turns.iter_mut().max_by_key(|t| t.content.len()) else {
            return Err(too_long(window));
        };
        let over = (tokens.len() + MIN_ANSWER - window) as f64 / tokens.len() as f64;
        let keep = (longest.content.len() as f64 * (1.0 - over) * 0.9) as usize;
        if keep < 64 {
            return Err(too_long(window));
        }
        longest.content = prompt::cut_middle(&longest.content, keep);
    };
    if tokens.is_empty() {
        // llama.cpp aborts the process on an empty batch.
        return Err(too_long(window));
    }
    Ok(tokens)
}

/// A context that has read `tokens`, and the batch holding the last of them, whose logits
/// give the first answer token.
fn read_prompt<'m>(
    model: &'m LlamaModel,
    backend: &LlamaBackend,
    window: usize,
    tokens: &[LlamaToken],
    cancel: &AtomicBool,
) -> Result<(LlamaContext<'m>, LlamaBatch<'static>), Error> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(window as u32))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    if cancel.load(Ordering::Relaxed) {
        return Err(cancelled());
    }
    let mut ctx = model
        .new_context(backend, params)
        .map_err(|e| Error::Rejected {
            status: 500,
            message: format!("cannot make a llama.cpp context: {e}"),
        })?;
    let mut batch = LlamaBatch::new(BATCH, 1);
    for (c, chunk) in tokens.chunks(BATCH).enumerate() {
        batch.clear();
        let last_chunk = (c + 1) * BATCH >= tokens.len();
        for (i, t) in chunk.iter().enumerate() {
            let pos = (c * BATCH + i) as i32;
            let logits = last_chunk && i + 1 == chunk.len();
            batch.add(*t, pos, &[0], logits).map_err(batch_failed)?;
        }
        ctx.decode(&mut batch).map_err(decode_failed)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
    }
    Ok((ctx, batch))
}

/// Writes the answer after a prompt of `prompt_len` tokens, at most `budget` tokens of it.
fn decode(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    prompt_len: usize,
    budget: usize,
    cancel: &AtomicBool,
    on_delta: &mut dyn FnMut(Delta),
) -> Result<Generated, Error> {
    let vocab = model.vocab();
    let mut sampler = LlamaSampler::chain_simple([
        // Small models loop; a mild repetition penalty keeps greedy decoding moving.
        LlamaSampler::penalties(model.n_vocab(), 64, 1.1, 0.0, 0.0),
        LlamaSampler::greedy(),
    ]);
    let started = Instant::now();
    let mut bytes: Vec<u8> = Vec::new();
    let mut shown = 0usize;
    let mut text_started = false;
    let mut generated = 0usize;
    let mut pos = prompt_len as i32;
    let stop = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let token = sampler.sample(ctx, batch.n_tokens() - 1);
        if vocab.is_eog(token) {
            break StopReason::EndTurn;
        }
        generated += 1;
        bytes.extend(vocab.token_to_piece(token, false, None));
        // Show only whole characters, and nothing that may turn out to be a tool call.
        let valid = prompt::utf8_prefix(&mut bytes);
        let safe = prompt::safe_prefix(valid);
        if safe > shown {
            if !text_started {
                on_delta(Delta::TextStart { index: 0 });
                text_started = true;
            }
            on_delta(Delta::Text {
                index: 0,
                text: valid[shown..safe].to_owned(),
            });
            shown = safe;
        }
        // One call per turn: what a small model writes after it is noise.
        if valid.contains(CALL_OPEN) && valid.ends_with(CALL_CLOSE) {
            break StopReason::ToolUse;
        }
        if generated >= budget {
            break StopReason::MaxTokens;
        }
        batch.clear();
        batch.add(token, pos, &[0], true).map_err(batch_failed)?;
        pos += 1;
        ctx.decode(batch).map_err(decode_failed)?;
    };
    Ok(Generated {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        stop,
        usage: Usage {
            input_tokens: prompt_len as u64,
            output_tokens: generated as u64,
            ..Usage::default()
        },
        decode_time: started.elapsed(),
    })
}

fn batch_failed(e: BatchAddError) -> Error {
    Error::Rejected {
        status: 500,
        message: format!("llama.cpp batch: {e}"),
    }
}

fn decode_failed(e: llama_cpp_2::DecodeError) -> Error {
    Error::Rejected {
        status: 500,
        message: format!("llama.cpp failed to decode: {e}"),
    }
}

fn too_long(window: usize) -> Error {
    Error::Rejected {
        status: 400,
        message: format!(
            "the system prompt and tools alone do not fit this local model's {window}-token window"
        ),
    }
}

fn cancelled() -> Error {
    Error::Transport("the local generation was cancelled".into())
}

/// The prompt in the model's own chat template, or ChatML when it has none llama.cpp knows.
fn render(model: &LlamaModel, turns: &[Turn]) -> String {
    let templated = model.chat_template(None).ok().and_then(|tmpl| {
        let chat: Vec<LlamaChatMessage> = turns
            .iter()
            .filter_map(|t| LlamaChatMessage::new(t.role.into(), t.content.clone()).ok())
            .collect();
        model.apply_chat_template(&tmpl, &chat, true).ok()
    });
    templated.unwrap_or_else(|| chatml(turns))
}

fn chatml(turns: &[Turn]) -> String {
    let mut s = String::new();
    for t in turns {
        s.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            t.role, t.content
        ));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}
