use super::*;

fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn write_then_read_with_and_without_a_range() {
    let d = root();
    let w = write(
        d.path(),
        WriteInput {
            file_path: "a/b.txt".into(),
            content: "one\ntwo\nthree".into(),
        },
    );
    assert!(!w.is_error, "{}", w.text);
    let all = read(
        d.path(),
        ReadInput {
            file_path: "a/b.txt".into(),
            view_range: None,
        },
    );
    assert_eq!(all.text, "one\ntwo\nthree");
    let mid = read(
        d.path(),
        ReadInput {
            file_path: "a/b.txt".into(),
            view_range: Some(vec![2, 2]),
        },
    );
    assert_eq!(mid.text, "two");
    let tail = read(
        d.path(),
        ReadInput {
            file_path: "a/b.txt".into(),
            view_range: Some(vec![2, -1]),
        },
    );
    assert_eq!(tail.text, "two\nthree");
}

#[test]
fn read_refuses_large_binary_and_missing_files_clearly() {
    let d = root();
    std::fs::write(d.path().join("big"), "x\n".repeat(200_000)).unwrap();
    let big = read(
        d.path(),
        ReadInput {
            file_path: "big".into(),
            view_range: None,
        },
    );
    assert!(
        big.is_error && big.text.contains("view_range"),
        "{}",
        big.text
    );
    let some = read(
        d.path(),
        ReadInput {
            file_path: "big".into(),
            view_range: Some(vec![1, 3]),
        },
    );
    assert_eq!(some.text, "x\nx\nx");
    std::fs::write(d.path().join("bin"), [0u8, 1, 2, 3]).unwrap();
    let bin = read(
        d.path(),
        ReadInput {
            file_path: "bin".into(),
            view_range: None,
        },
    );
    assert!(bin.is_error && bin.text.contains("binary"), "{}", bin.text);
    let missing = read(
        d.path(),
        ReadInput {
            file_path: "nope".into(),
            view_range: None,
        },
    );
    assert_eq!(missing.text, "read: nope: no such file or directory");
    let dir = read(
        d.path(),
        ReadInput {
            file_path: ".".into(),
            view_range: None,
        },
    );
    assert!(dir.text.contains("not a regular file"));
}

#[test]
fn edit_replaces_one_exact_string_and_refuses_ambiguity() {
    let d = root();
    std::fs::write(d.path().join("f"), "a b a").unwrap();
    let amb = edit(
        d.path(),
        EditInput {
            file_path: "f".into(),
            old_string: "a".into(),
            new_string: "c".into(),
            replace_all: None,
        },
    );
    assert!(
        amb.is_error && amb.text.contains("appears 2 times"),
        "{}",
        amb.text
    );
    let missing = edit(
        d.path(),
        EditInput {
            file_path: "f".into(),
            old_string: "z".into(),
            new_string: "c".into(),
            replace_all: None,
        },
    );
    assert!(missing.is_error && missing.text.contains("not found"));
    let one = edit(
        d.path(),
        EditInput {
            file_path: "f".into(),
            old_string: "b".into(),
            new_string: "B".into(),
            replace_all: None,
        },
    );
    assert!(!one.is_error);
    let all = edit(
        d.path(),
        EditInput {
            file_path: "f".into(),
            old_string: "a".into(),
            new_string: "c".into(),
            replace_all: Some(true),
        },
    );
    assert_eq!(all.text, "edited f (2 replacements)");
    assert_eq!(
        std::fs::read_to_string(d.path().join("f")).unwrap(),
        "c B c"
    );
}

#[test]
fn glob_and_grep_search_the_workspace() {
    let d = root();
    std::fs::create_dir_all(d.path().join("src/deep")).unwrap();
    std::fs::write(
        d.path().join("src/main.rs"),
        "fn main() {}\n// TODO: more\n",
    )
    .unwrap();
    std::fs::write(d.path().join("src/deep/lib.rs"), "pub fn f() {}\n").unwrap();
    std::fs::write(d.path().join("README.md"), "TODO: docs\n").unwrap();
    let g = glob(
        d.path(),
        GlobInput {
            pattern: "**/*.rs".into(),
            path: None,
        },
    );
    assert_eq!(g.text.lines().count(), 2, "{}", g.text);
    let top = glob(
        d.path(),
        GlobInput {
            pattern: "*.md".into(),
            path: None,
        },
    );
    assert!(top.text.ends_with("README.md"));
    let hits = grep(
        d.path(),
        GrepInput {
            pattern: "TODO".into(),
            path: None,
        },
    );
    assert_eq!(hits.text.lines().count(), 2, "{}", hits.text);
    assert!(hits.text.contains("main.rs:2:// TODO: more"));
    let bad = grep(
        d.path(),
        GrepInput {
            pattern: "(".into(),
            path: None,
        },
    );
    assert!(bad.is_error);
}

#[test]
fn images_come_back_as_base64_for_the_model_to_see() {
    let d = root();
    let png = [0x89u8, b'P', b'N', b'G', 0, 1, 2, 3];
    std::fs::write(d.path().join("dot.png"), png).unwrap();
    let o = read(
        d.path(),
        ReadInput {
            file_path: "dot.png".into(),
            view_range: None,
        },
    );
    assert!(!o.is_error, "{o:?}");
    let img = o.image.unwrap();
    assert_eq!(img.media_type, "image/png");
    assert_eq!(img.data, "iVBORwABAgM=");
    let r = read(
        d.path(),
        ReadInput {
            file_path: "dot.png".into(),
            view_range: Some(vec![1, 2]),
        },
    );
    assert!(r.is_error);
}
