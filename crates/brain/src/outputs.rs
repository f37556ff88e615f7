//! A session's outputs: the files its agent leaves in `/mnt/session/outputs/`, collected into
//! the Files API as files scoped to the session, when the session comes to rest and when it is
//! archived.
//!
//! Order, so that a crash neither loses a file nor lists one twice: collection runs before the
//! `session.status_idle` that ends the turn is appended. A crash during it leaves the session
//! running, so the wake after the restart comes back here (through the open span or the rest
//! the fold asks for) and collects again. Each file is stored on its own by
//! `Catalog::put_output`, which in one transaction replaces what held its path and leaves the
//! same bytes alone: collecting twice adds nothing, a file overwritten since gets a new
//! version, and a path never holds two files.

use std::path::Path;

use sha2::{Digest, Sha256};

use agentd_hands::outputs::{Caps, read_all};
use agentd_session::catalog::{Catalog, NewOutput};

/// A file larger than an upload may be is not collected.
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// Files collected per session at most.
pub const MAX_FILES: usize = 1000;

/// What the model is told about its outputs directory, after the agent's own system prompt.
pub const PROMPT: &str = "Files you save under /mnt/session/outputs/ are delivered to the user: \
when your turn ends, each one becomes a file the user can list and download. Save there the \
deliverables the user asked for (reports, data, charts); use /workspace for everything else. A \
file saved again replaces the one delivered before.";

/// Collect `dir`, the outputs of session `session_id`. Returns how many files were stored anew.
pub async fn collect(
    catalog: &dyn Catalog,
    session_id: &str,
    dir: &Path,
) -> Result<usize, crate::Error> {
    let d = dir.to_owned();
    let caps = Caps {
        file_bytes: MAX_FILE_BYTES,
        files: MAX_FILES,
        depth: 16,
    };
    let (found, skipped) = tokio::task::spawn_blocking(move || read_all(&d, caps))
        .await
        .map_err(|e| crate::Error::Catalog(e.to_string()))?
        .map_err(|e| crate::Error::Catalog(format!("cannot read {}: {e}", dir.display())))?;
    for s in &skipped {
        tracing::warn!(session = session_id, path = %s.path, why = %s.why, "an output file is not collected");
    }
    if found.is_empty() {
        return Ok(0);
    }
    let held = catalog.outputs(session_id).await?;
    let mut stored = 0;
    for f in found {
        let sha256 = hex(&Sha256::digest(&f.bytes));
        if held.iter().any(|h| h.path == f.path && h.sha256 == sha256) {
            continue;
        }
        let path = f.path.clone();
        let out = NewOutput {
            mime_type: agentd_wire::file::mime_type_of(&f.path).to_owned(),
            path: f.path,
            sha256,
            content: f.bytes,
        };
        match catalog.put_output(session_id, out).await {
            Ok(()) => stored += 1,
            // Like a file over the size cap: not collected, and the turn ends as it would.
            Err(agentd_session::catalog::Error::Quota(why)) => {
                tracing::warn!(session = session_id, path = %path, why = %why, "an output file is not collected");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if stored > 0 {
        tracing::info!(session = session_id, stored, "collected output files");
    }
    Ok(stored)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
