//! The few /etc files every sandbox sees in place of the host's: names for the sandbox's users
//! and its hostname, and nothing about the host's own users or hosts.

use std::path::{Path, PathBuf};

/// A directory holding `passwd`, `group` and `hosts`, shared by all of one provider's
/// sandboxes and removed with it.
pub(super) struct Etc(PathBuf);

impl Etc {
    pub(super) fn create() -> std::io::Result<Etc> {
        let n: u64 = rand::random();
        let p =
            std::env::temp_dir().join(format!("agentd-sandbox-etc-{}-{n:x}", std::process::id()));
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

impl Drop for Etc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
