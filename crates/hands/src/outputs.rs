//! Reading what a sandbox left in its outputs directory, from the host, without trusting it.
//!
//! The directory is the sandbox's to write, and processes it started may still run while agentd
//! reads it: every file is opened beneath the directory with no symbolic link followed at any
//! component (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so swapping a directory
//! for a link to a host path mid-read gets an error, never a host file. Only regular files
//! count; sizes and counts are capped.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// One file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Relative to the directory, `/`-separated.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Why a file was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

/// Limits on one read of a directory.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub file_bytes: u64,
    pub files: usize,
    /// Directory levels below the top.
    pub depth: usize,
}

/// The regular files under `dir`, in path order, at most `caps.files` of them, each at most
/// `caps.file_bytes`; what was left out and why. A missing directory holds nothing.
pub fn read_all(dir: &Path, caps: Caps) -> std::io::Result<(Vec<Found>, Vec<Skipped>)> {
    let root = match std::fs::File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], vec![])),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(caps.depth + 1)
        .sort_by_file_name();
    for entry in walk.into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            skipped.push(Skipped {
                path: rel.to_string_lossy().into_owned(),
                why: "its name is not UTF-8".into(),
            });
            continue;
        };
        if paths.len() == caps.files {
            skipped.push(Skipped {
                path: rel.to_owned(),
                why: format!("more than {} files", caps.files),
            });
            continue;
        }
        paths.push(rel.to_owned());
    }
    let mut found = Vec::with_capacity(paths.len());
    for path in paths {
        match read_beneath(&root, &path, caps.file_bytes) {
            Ok(Some(bytes)) => found.push(Found { path, bytes }),
            Ok(None) => skipped.push(Skipped {
                path,
                why: format!("larger than {} bytes", caps.file_bytes),
            }),
            // Gone since the walk, or made a link, a directory or a pipe meanwhile.
            Err(e) => skipped.push(Skipped {
                path,
                why: e.to_string(),
            }),
        }
    }
    Ok((found, skipped))
}

/// The bytes of regular file `rel` beneath `root`, or None if it holds more than `cap`.
fn read_beneath(root: &std::fs::File, rel: &str, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(root.as_fd(), rel, how).map_err(std::io::Error::from)?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > cap {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // It may grow while read: never past the cap.
    file.take(cap + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        file_bytes: 10,
        files: 3,
        depth: 4,
    };

    #[test]
    fn regular_files_are_read_in_order_and_links_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "host file").unwrap();
        let out = d.path().join("out");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("b.txt"), "bee").unwrap();
        std::fs::write(out.join("sub/a.csv"), "1,2").unwrap();
        std::fs::write(out.join("big.bin"), "0123456789ab").unwrap();
        std::os::unix::fs::symlink(&secret, out.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path(), out.join("up")).unwrap();
        let (found, skipped) = read_all(&out, CAPS).unwrap();
        let found: Vec<(&str, &[u8])> = found
            .iter()
            .map(|f| (f.path.as_str(), f.bytes.as_slice()))
            .collect();
        assert_eq!(
            found,
            vec![("b.txt", &b"bee"[..]), ("sub/a.csv", &b"1,2"[..])]
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].path, "big.bin");
        // A directory component that is a link is refused at open.
        let root = std::fs::File::open(&out).unwrap();
        assert!(read_beneath(&root, "up/secret", 100).is_err());
        assert!(read_beneath(&root, "link.txt", 100).is_err());
    }

    #[test]
    fn a_count_cap_leaves_the_rest_out_and_a_missing_directory_is_empty() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(d.path().join(format!("f{i}")), "x").unwrap();
        }
        let (found, skipped) = read_all(d.path(), CAPS).unwrap();
        assert_eq!((found.len(), skipped.len()), (3, 2));
        assert_eq!(
            read_all(&d.path().join("none"), CAPS).unwrap(),
            (vec![], vec![])
        );
    }
}
