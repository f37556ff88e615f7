//! The few /etc files every sandbox sees in place of the host's: names for the sandbox's users
//! and its hostname, and nothing about the host's own users or hosts.

use std::path::{Path, PathBuf};

/// A directory holding `passwd`, `group` and `hosts`, shared by all of one provider's
/// sandboxes and removed with it.
pub(super) struct Etc(PathBuf);

impl Etc {
    pub(super) fn create() -> std::io::Result<Etc> {
        Self::create_in(&std::env::temp_dir())
    }

    fn create_in(dir: &Path) -> std::io::Result<Etc> {
        remove_orphans(dir);
        let n: u64 = rand::random();
        let p = dir.join(format!("{PREFIX}{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        // Made before the files are written, so a failed write still removes the directory.
        let etc = Etc(p);
        let write = |name: &str, body: &str| std::fs::write(etc.0.join(name), body);
        write(
            "passwd",
            "root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/workspace:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )?;
        write("group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n")?;
        write("hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n")?;
        Ok(etc)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

const PREFIX: &str = "agentd-sandbox-etc-";

/// Remove the directories of processes that are gone: one killed (or ended without unwinding)
/// never ran `Drop`, and each start would otherwise leave one more behind in the temp dir.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Etc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_directory_is_removed_and_a_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        // Beyond the kernel's pid_max: no such process can exist.
        let dead = tmp.path().join(format!("{PREFIX}99999999-1f"));
        let live = tmp
            .path()
            .join(format!("{PREFIX}{}-2f", std::process::id()));
        let other = tmp.path().join("agentd-something-else-1-1");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        let etc = Etc::create_in(tmp.path()).unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
        assert!(etc.path().join("passwd").exists());
        let made = etc.path().to_owned();
        drop(etc);
        assert!(!made.exists());
    }
}
