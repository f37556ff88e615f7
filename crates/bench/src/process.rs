//! Starting a real `agentd serve` for the benches that drive it over HTTP.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Spawn `cmd` (an `agentd serve --listen 127.0.0.1:0 …`) with its stderr piped, and wait for
/// the address it listens on; its log is drained from then on so it never blocks on a full
/// pipe. The child is killed when dropped.
pub async fn serve(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let exe = cmd.as_std().get_program().to_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "start {} (build it: cargo build --release -p agentd)",
                exe.to_string_lossy()
            )
        })?;
    let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split("agentd: listening on ").nth(1) {
                return Ok(rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned());
            }
        }
        bail!("agentd exited before listening")
    })
    .await
    .context("agentd did not listen within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}
