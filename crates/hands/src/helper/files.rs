//! The file tools, run by the helper inside the sandbox, where the mount namespace already
//! limits what exists: paths resolve against the workspace and can reach nothing the sandbox
//! was not given.

use std::io::Read;
use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use regex::Regex;
use walkdir::WalkDir;

use crate::Output;
use crate::tools::{
    EditInput, GLOB_RESULT_LIMIT, GREP_MAX_LINE, GREP_OUTPUT_LIMIT, GlobInput, GrepInput,
    MAX_FILE_BYTES, ReadInput, WALK_MAX_ENTRIES, WriteInput,
};

/// `p` against the workspace, with `.` components dropped so results read cleanly. `..` is
/// kept: what it reaches is bounded by the sandbox's mounts, not by this function.
pub fn resolve(root: &Path, p: &str) -> PathBuf {
    let joined = root.join(p);
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn fs_error(op: &str, path: &str, e: &std::io::Error) -> Output {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        // The workspace's quota (bytes or files) is what usually runs out; say how to go on.
        std::io::ErrorKind::StorageFull => format!(
            "{e}: the workspace is at its disk quota (bytes or number of files); delete files to make room"
        ),
        _ => e.to_string(),
    };
    Output::error(format!("{op}: {path}: {why}"))
}

fn regular_file(op: &str, path: &str, target: &Path) -> Result<u64, Output> {
    // stat before open: a FIFO would block open(), a huge file would fill memory.
    let meta = std::fs::metadata(target).map_err(|e| fs_error(op, path, &e))?;
    if !meta.is_file() {
        return Err(Output::error(format!("{op}: {path}: not a regular file")));
    }
    Ok(meta.len())
}

fn read_utf8(op: &str, path: &str, target: &Path, limit: u64) -> Result<String, Output> {
    let mut bytes = Vec::new();
    std::fs::File::open(target)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(|e| fs_error(op, path, &e))?;
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return Err(Output::error(format!(
            "{op}: {path}: a binary file; inspect it with bash (e.g. `file`, `xxd | head`)"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Output::error(format!("{op}: {path}: not valid UTF-8 text")))
}

pub fn read(root: &Path, i: ReadInput) -> Output {
    let target = resolve(root, &i.file_path);
    let size = match regular_file("read", &i.file_path, &target) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let range = match i.view_range.as_deref() {
        None => None,
        Some([a, b]) => Some((*a, *b)),
        Some(_) => return Output::error("read: view_range must be [start_line, end_line]"),
    };
    if let Some(media_type) = image_type(&target) {
        if range.is_some() {
            return Output::error("read: view_range does not apply to images");
        }
        if size > MAX_IMAGE_BYTES {
            return Output::error(format!(
                "read: {} is an image of {size} bytes, over the {MAX_IMAGE_BYTES}-byte limit; shrink it first (e.g. with python3 and PIL, if installed)",
                i.file_path
            ));
        }
        return match std::fs::read(&target) {
            Ok(bytes) => {
                use base64::Engine;
                let mut o = Output::ok(format!("{} ({media_type}, {size} bytes)", i.file_path));
                o.image = Some(crate::Image {
                    media_type: media_type.into(),
                    data: base64::engine::general_purpose::STANDARD.encode(bytes),
                });
                o
            }
            Err(e) => fs_error("read", &i.file_path, &e),
        };
    }
    if size > MAX_FILE_BYTES && range.is_none() {
        return Output::error(format!(
            "read: {} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit; pass view_range, e.g. [1, 500]",
            i.file_path
        ));
    }
    // With a range, read the lines streaming so a large file costs only what is shown.
    let limit = if range.is_some() {
        u64::MAX
    } else {
        MAX_FILE_BYTES
    };
    let text = match read_utf8("read", &i.file_path, &target, limit) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let Some((start, end)) = range else {
        return Output::ok(text);
    };
    let from = start.max(1) as usize - 1;
    let lines = text.split('\n').skip(from);
    let picked: Vec<&str> = if end < 0 {
        lines.collect()
    } else {
        lines
            .take((end as usize + 1).saturating_sub(from + 1))
            .collect()
    };
    let mut out = picked.join("\n");
    if out.len() as u64 > MAX_FILE_BYTES {
        let mut cut = MAX_FILE_BYTES as usize;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&format!(
            "\n[cut at {MAX_FILE_BYTES} bytes; ask for a smaller view_range]"
        ));
    }
    Output::ok(out)
}

/// Images larger than this are refused: the Messages API takes about 5 MB of base64.
const MAX_IMAGE_BYTES: u64 = 3_750_000;

/// The media type of an image the model can look at, by extension.
fn image_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => return None,
    })
}

pub fn write(root: &Path, i: WriteInput) -> Output {
    let target = resolve(root, &i.file_path);
    if let Some(parent) = target.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        return fs_error("write", &i.file_path, &e);
    }
    match std::fs::write(&target, i.content.as_bytes()) {
        Ok(()) => Output::ok(format!(
            "wrote {} bytes to {}",
            i.content.len(),
            i.file_path
        )),
        Err(e) => fs_error("write", &i.file_path, &e),
    }
}

pub fn edit(root: &Path, i: EditInput) -> Output {
    let target = resolve(root, &i.file_path);
    let size = match regular_file("edit", &i.file_path, &target) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if size > MAX_FILE_BYTES {
        return Output::error(format!(
            "edit: {} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit; edit it with bash (sed, patch)",
            i.file_path
        ));
    }
    if i.old_string.is_empty() {
        return Output::error("edit: old_string must not be empty");
    }
    let text = match read_utf8("edit", &i.file_path, &target, MAX_FILE_BYTES) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let count = text.matches(&i.old_string).count();
    let all = i.replace_all.unwrap_or(false);
    if count == 0 {
        return Output::error(format!("edit: old_string not found in {}", i.file_path));
    }
    if count > 1 && !all {
        return Output::error(format!(
            "edit: old_string appears {count} times in {}; include more surrounding text to make it unique, or set replace_all",
            i.file_path
        ));
    }
    let updated = if all {
        text.replace(&i.old_string, &i.new_string)
    } else {
        text.replacen(&i.old_string, &i.new_string, 1)
    };
    match std::fs::write(&target, updated) {
        Ok(()) => Output::ok(format!(
            "edited {} ({} replacement{})",
            i.file_path,
            if all { count } else { 1 },
            if all && count != 1 { "s" } else { "" }
        )),
        Err(e) => fs_error("edit", &i.file_path, &e),
    }
}

pub fn glob(root: &Path, i: GlobInput) -> Output {
    let base = resolve(root, i.path.as_deref().unwrap_or("."));
    let matcher = match GlobBuilder::new(&i.pattern).literal_separator(true).build() {
        Ok(g) => g.compile_matcher(),
        Err(e) => return Output::error(format!("glob: invalid pattern {:?}: {e}", i.pattern)),
    };
    let mut hits: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in WalkDir::new(&base)
        .follow_links(false)
        .into_iter()
        .take(WALK_MAX_ENTRIES)
        .filter_map(Result::ok)
    {
        let Ok(rel) = entry.path().strip_prefix(&base) else {
            continue;
        };
        if !rel.as_os_str().is_empty() && matcher.is_match(rel) {
            let mtime = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .unwrap_or(std::time::UNIX_EPOCH);
            hits.push((mtime, entry.path().to_owned()));
        }
    }
    if hits.is_empty() {
        return Output::ok(format!(
            "no files match {:?} under {}",
            i.pattern,
            base.display()
        ));
    }
    hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = hits.len();
    let mut out: Vec<String> = hits
        .into_iter()
        .take(GLOB_RESULT_LIMIT)
        .map(|(_, p)| p.display().to_string())
        .collect();
    if total > GLOB_RESULT_LIMIT {
        out.push(format!(
            "[{} more not shown; narrow the pattern]",
            total - GLOB_RESULT_LIMIT
        ));
    }
    Output::ok(out.join("\n"))
}

pub fn grep(root: &Path, i: GrepInput) -> Output {
    let re = match Regex::new(&i.pattern) {
        Ok(r) => r,
        Err(e) => return Output::error(format!("grep: invalid regular expression: {e}")),
    };
    let base = resolve(root, i.path.as_deref().unwrap_or("."));
    let mut out = String::new();
    let mut truncated = false;
    'files: for entry in WalkDir::new(&base)
        .follow_links(false)
        .into_iter()
        .take(WALK_MAX_ENTRIES)
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(f) = std::fs::File::open(entry.path()) else {
            continue;
        };
        let mut bytes = Vec::new();
        if f.take(16 << 20).read_to_end(&mut bytes).is_err()
            || bytes.iter().take(8192).any(|b| *b == 0)
        {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if re.is_match(line) {
                let mut shown: String = line.chars().take(GREP_MAX_LINE).collect();
                if shown.len() < line.len() {
                    shown.push_str(" [line cut]");
                }
                let hit = format!("{}:{}:{shown}\n", entry.path().display(), n + 1);
                if out.len() + hit.len() > GREP_OUTPUT_LIMIT {
                    truncated = true;
                    break 'files;
                }
                out.push_str(&hit);
            }
        }
    }
    if out.is_empty() {
        return Output::ok(format!(
            "no matches for {:?} under {}",
            i.pattern,
            base.display()
        ));
    }
    if truncated {
        out.push_str(&format!(
            "[output cut at {GREP_OUTPUT_LIMIT} bytes; narrow the pattern or path]"
        ));
    }
    Output::ok(out)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
