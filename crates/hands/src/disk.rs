//! A workspace's disk quota, enforced by the filesystem rather than by the tools: each
//! workspace is an ext4 filesystem of its own, in a sparse image file beside the workspace
//! directory, loop-mounted over that directory on the host. Every writer in the sandbox — bash,
//! its children, the file tools — then meets ENOSPC at the byte limit and at the inode limit.
//!
//! Why an image and not a tmpfs: the workspace outlives its sandboxes and agentd itself (a
//! fresh sandbox, or a restarted agentd, finds the same files), which RAM cannot promise. Why
//! not project quotas: they need the host filesystem mounted with them, which agentd cannot
//! choose. The cost: loop mounts need root, the filesystem's own metadata (journal, inode
//! tables) comes out of the quota, and the host's mount table lists one mount per workspace
//! that has had a sandbox, until the workspace is removed.
//!
//! Without root, `Disks::Unavailable` says why; the owner warns that only the brain's check
//! around write and edit remains.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::Limits;

/// Threads of one session provision at once over one workspace; only one may make its image.
static ATTACH: Mutex<()> = Mutex::new(());
/// ext4 cannot hold more inode tables than its size; keep them to a small share of the image.
const MIN_BYTES_PER_INODE: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disks {
    /// Loop-mounted ext4 images, made with this `mkfs.ext4`.
    Images { mkfs: PathBuf },
    /// Not possible here; the reason, for the operator.
    Unavailable(String),
}

impl Disks {
    /// What this host lets this process do.
    pub fn detect() -> Disks {
        if !nix::unistd::geteuid().is_root() {
            return Disks::Unavailable(
                "agentd does not run as root, and loop mounts need it".into(),
            );
        }
        if !Path::new("/dev/loop-control").exists() {
            return Disks::Unavailable("this host has no loop devices (/dev/loop-control)".into());
        }
        match (sbin("mkfs.ext4"), sbin("mount"), sbin("umount")) {
            (Some(mkfs), Some(_), Some(_)) => Disks::Images { mkfs },
            _ => Disks::Unavailable(
                "mkfs.ext4, mount or umount is missing (apt-get install e2fsprogs mount)".into(),
            ),
        }
    }

    /// Make `dir` (which exists) a filesystem capped by `limits`' disk quota, unless it is one
    /// already. False when it stays a plain directory: no quota asked, none possible here, or
    /// files from before quotas that do not fit in one (logged: nothing bounds that workspace).
    pub fn attach(&self, dir: &Path, limits: &Limits) -> std::io::Result<bool> {
        let Disks::Images { mkfs } = self else {
            return Ok(false);
        };
        if limits.disk_bytes == 0 {
            return Ok(false);
        }
        let _one = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
        if is_mountpoint(dir)? {
            return Ok(true);
        }
        let image = image_path(dir);
        let old = sibling(dir, "premigration");
        if !image.exists() {
            let has_files = std::fs::read_dir(dir)?.next().is_some();
            if let Err(e) = make_image(mkfs, dir, limits, has_files) {
                if !has_files {
                    return Err(e);
                }
                tracing::warn!(dir = %dir.display(), error = %e, "the workspace's files do not fit in its disk quota; it stays a plain directory, without one");
                return Ok(false);
            }
            if has_files {
                // The image holds a copy now; move the originals out from under the mount.
                std::fs::rename(dir, &old)?;
                std::fs::create_dir(dir)?;
            }
        }
        run(Command::new("mount")
            .args(["-t", "ext4", "-o"])
            .arg(MOUNT_OPTIONS)
            .arg(&image)
            .arg(dir))?;
        // mkfs's lost+found would show up in the agent's workspace; fsck remakes it if needed.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(true)
    }

    /// Delete the workspace `dir`, its filesystem and image included. Nothing may be using it.
    pub fn remove(&self, dir: &Path) -> std::io::Result<()> {
        let _one = ATTACH.lock().unwrap_or_else(|p| p.into_inner());
        if dir.exists() && is_mountpoint(dir)? {
            // A lazy unmount finishes once a process that still holds a file lets go.
            if run(Command::new("umount").arg(dir)).is_err() {
                run(Command::new("umount").arg("--lazy").arg(dir))?;
            }
        }
        for f in [image_path(dir), sibling(dir, "ext4.new")] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// discard: deleting files frees the host's disk too (the loop device punches holes).
/// noinit_itable: the image is a fresh sparse file, its inode tables already read as zeros;
/// zeroing them would write the whole table to the host's disk.
const MOUNT_OPTIONS: &str = "loop,discard,noinit_itable,nosuid,nodev,noatime";

/// The image of workspace `dir`: `<dir>.ext4`, beside it, where no sandbox can see it.
pub fn image_path(dir: &Path) -> PathBuf {
    sibling(dir, "ext4")
}

fn sibling(dir: &Path, ext: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(ext);
    dir.with_file_name(name)
}

/// A new image for workspace `dir`, holding its files if `copy`. Made under another name and
/// renamed, so a crash never leaves a half-made image to be mounted.
fn make_image(mkfs: &Path, dir: &Path, limits: &Limits, copy: bool) -> std::io::Result<()> {
    let tmp = sibling(dir, "ext4.new");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.set_len(limits.disk_bytes)?;
    drop(f);
    let mut cmd = Command::new(mkfs);
    // -m 0: the sandbox's user is not root, so blocks reserved for root would be lost to it.
    cmd.args(["-q", "-F", "-m", "0", "-L", "agentd-workspace"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]);
    if limits.disk_inodes > 0 {
        let most = (limits.disk_bytes / MIN_BYTES_PER_INODE).max(64);
        cmd.arg("-N").arg(limits.disk_inodes.min(most).to_string());
    }
    if copy {
        cmd.arg("-d").arg(dir);
    }
    let made = run(cmd.arg(&tmp)).and_then(|()| std::fs::rename(&tmp, image_path(dir)));
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    made
}

fn is_mountpoint(dir: &Path) -> std::io::Result<bool> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    Ok(std::fs::metadata(dir)?.dev() != std::fs::metadata(parent)?.dev())
}

/// Runs `cmd`; its stderr is the error when it fails.
fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `name` in the system's admin directories, which agentd's own PATH may lack.
fn sbin(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}
