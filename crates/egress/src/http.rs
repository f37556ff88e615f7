//! One HTTP/1.1 request through the proxy, strictly: a head that parses one way only (CRLF
//! line ends, no folded lines, header names that are tokens, one unambiguous body framing), and
//! a body forwarded exactly as framed, after which nothing more is read from the sandbox. A
//! request that a server could read as two never reaches one, so nothing the proxy adds (a
//! grant's credential) can be moved into a request the sandbox wrote.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::substitute::{MAX_BODY, Substitution};

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    /// Name and value of each header line, in order.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: Body,
}

/// How the request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    Length(u64),
    Chunked,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse `raw`, the head up to and including its blank line. The error is what the sandbox is
/// told, with a 400.
pub(crate) fn parse(raw: &[u8]) -> Result<Head<'_>, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "the request head is not UTF-8")?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or("the request head does not end with a blank line")?;
    // A lone CR or LF is a line end to some servers and not to others.
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        let lone_cr = *b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        let lone_lf = *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r');
        if lone_cr || lone_lf || (*b < 0x20 && !matches!(*b, b'\r' | b'\n' | b'\t')) || *b == 0x7f {
            return Err("the request head has a bare CR or LF, or a control character");
        }
    }
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !is_token(method) || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err("malformed request line");
    }
    let mut headers = Vec::new();
    let (mut length, mut chunked, mut encodings) = (None::<u64>, false, 0);
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not accepted");
        }
        let (name, value) = line
            .split_once(':')
            .ok_or("a header line without a colon")?;
        if !is_token(name) {
            return Err("a header name that is not a token");
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err("a bad Content-Length");
            }
            let n: u64 = value.parse().map_err(|_| "a bad Content-Length")?;
            if length.is_some() {
                return Err("more than one Content-Length");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            if !value.eq_ignore_ascii_case("chunked") || encodings > 1 {
                return Err("a Transfer-Encoding other than one chunked");
            }
            chunked = true;
        }
        headers.push((name, value));
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Err("both Content-Length and Transfer-Encoding"),
        (Some(n), false) => Body::Length(n),
        (None, true) => Body::Chunked,
        (None, false) => Body::None,
    };
    Ok(Head {
        method,
        target,
        version,
        headers,
        body,
    })
}

/// What the proxy adds to one request.
#[derive(Default)]
pub(crate) struct Adds<'a> {
    /// The `Host` sent instead of the sandbox's: the authority the proxy connected to, so a
    /// request that carries a credential or a secret goes to the host it was checked for, not
    /// to another virtual host behind the same address.
    pub host: Option<&'a str>,
    /// An `Authorization` sent instead of the sandbox's (a grant's).
    pub authorization: Option<&'a str>,
    /// Secrets written in place of their placeholders in header values.
    pub subs: &'a [&'a Substitution],
    /// The body's length, when a substitution changed it.
    pub length: Option<u64>,
}

/// The methods a secret is written into a request of: not TRACE, which a server echoes.
pub(crate) fn substitutes(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
    )
}

/// The head sent upstream: origin-form `target`, hop-by-hop and proxy headers dropped,
/// `Connection: close`, and what `add` says.
pub(crate) fn rewrite(head: &Head<'_>, target: &str, add: &Adds<'_>) -> String {
    let mut out = format!("{} {target} {}\r\n", head.method, head.version);
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        let hop = matches!(
            lower.as_str(),
            "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive" | "upgrade"
        );
        let replaced = (add.host.is_some() && lower == "host")
            || (add.authorization.is_some() && lower == "authorization");
        if hop || replaced {
            continue;
        }
        if lower == "content-length"
            && let Some(n) = add.length
        {
            out.push_str(&format!("{name}: {n}\r\n"));
            continue;
        }
        let mut value = (*value).to_owned();
        if lower != "host" {
            for s in add.subs.iter().filter(|s| s.in_headers()) {
                value = s.apply(&value);
            }
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(host) = add.host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    if let Some(a) = add.authorization {
        out.push_str(&format!("Authorization: {a}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// The body of a request whose secrets go in its body, read whole (`pre`, what was read with
/// the head, then the rest from `from`) and substituted; None when no substitution goes in
/// bodies, or the body is chunked or over `MAX_BODY`, and goes on as it is.
pub(crate) async fn substituted_body<R: AsyncRead + Unpin>(
    from: &mut R,
    pre: &[u8],
    body: Body,
    subs: &[&Substitution],
) -> io::Result<Option<Vec<u8>>> {
    let Body::Length(n) = body else {
        return Ok(None);
    };
    if n > MAX_BODY || !subs.iter().any(|s| s.in_body()) {
        return Ok(None);
    }
    let n = usize::try_from(n).map_err(io::Error::other)?;
    let mut bytes = pre.get(..n.min(pre.len())).unwrap_or_default().to_vec();
    if bytes.len() < n {
        let mut more = vec![0u8; n - bytes.len()];
        from.read_exact(&mut more).await?;
        bytes.extend_from_slice(&more);
    }
    for s in subs.iter().filter(|s| s.in_body()) {
        bytes = s.apply_bytes(&bytes);
    }
    Ok(Some(bytes))
}

/// Send `head` and the body `pre` (read already) and `from` hold, framed as `body` says, to
/// `to`; nothing past the body is read.
async fn send<R, W>(pre: &[u8], from: R, to: &mut W, head: &str, body: Body) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    to.write_all(head.as_bytes()).await?;
    let mut rd = BufReader::new(AsyncReadExt::chain(pre, from));
    match body {
        Body::None => {}
        Body::Length(n) => {
            let sent = tokio::io::copy(&mut (&mut rd).take(n), to).await?;
            if sent != n {
                return Err(io::Error::other("the body ended before its Content-Length"));
            }
        }
        Body::Chunked => loop {
            let line = read_line(&mut rd).await?;
            let digits = line
                .trim_end_matches("\r\n")
                .split(';')
                .next()
                .unwrap_or_default();
            let size = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(digits, 16).ok())
                .flatten()
                .ok_or_else(|| io::Error::other("a bad chunk size"))?;
            // Sent on as the proxy read it, extensions dropped.
            to.write_all(format!("{size:x}\r\n").as_bytes()).await?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let t = read_line(&mut rd).await?;
                    to.write_all(t.as_bytes()).await?;
                    if t == "\r\n" {
                        break;
                    }
                }
                break;
            }
            let sent = tokio::io::copy(&mut (&mut rd).take(size), to).await?;
            let mut crlf = [0u8; 2];
            rd.read_exact(&mut crlf).await?;
            if sent != size || &crlf != b"\r\n" {
                return Err(io::Error::other("a chunk that does not match its size"));
            }
            to.write_all(b"\r\n").await?;
        },
    }
    to.flush().await
}

/// One CRLF-ended line of at most 4 KiB.
async fn read_line<R: AsyncBufReadExt + Unpin>(rd: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *rd).take(4096).read_until(b'\n', &mut line).await?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(io::Error::other("a chunk line that does not end with CRLF"));
    }
    String::from_utf8(line).map_err(|_| io::Error::other("a chunk line that is not text"))
}

/// Exchange one request: `head` and its body from `client` to `upstream`, and the response
/// back until the server closes (it was asked to). What the client sends after its body is
/// never read.
pub(crate) async fn exchange<C, U>(
    client: C,
    upstream: U,
    head: &str,
    pre: &[u8],
    body: Body,
) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    {
        let sending = send(pre, cr, &mut uw, head, body);
        let receiving = tokio::io::copy(&mut ur, &mut cw);
        tokio::pin!(sending, receiving);
        tokio::select! {
            r = &mut receiving => { r?; }
            s = &mut sending => {
                s?;
                receiving.await?;
            }
        }
    }
    cw.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    #[test]
    fn a_head_that_could_be_read_two_ways_is_refused() {
        let ok = parse(b"POST /r/git-upload-pack HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        assert_eq!(
            (ok.method, ok.target, ok.body),
            ("POST", "/r/git-upload-pack", Body::Length(5))
        );
        let chunked = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(chunked.body, Body::Chunked);
        for bad in [
            &b"GET / HTTP/1.1\r\nX: a\n\nPOST /c HTTP/1.1\nHost: evil\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: a\rY: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_grant_replaces_host_and_authorization() {
        let g = Grant::basic(false, "git.example", 80, "/a/r", "x", "t");
        let head = parse(
            b"GET http://git.example/a/r/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: evil.example\r\nAuthorization: mine\r\nConnection: keep-alive\r\n\r\n",
        )
        .unwrap();
        let out = rewrite(
            &head,
            "/a/r/info/refs?service=git-upload-pack",
            &Adds {
                host: Some("git.example"),
                authorization: Some(g.authorization()),
                ..Adds::default()
            },
        );
        assert!(
            out.starts_with("GET /a/r/info/refs?service=git-upload-pack HTTP/1.1\r\n"),
            "{out}"
        );
        assert!(!out.contains("evil") && !out.contains("mine"), "{out}");
        assert!(out.contains(
            "Host: git.example\r\nAuthorization: Basic eDp0\r\nConnection: close\r\n\r\n"
        ));
        let plain = rewrite(&head, "/", &Adds::default());
        assert!(plain.contains("Host: evil.example") && plain.contains("Authorization: mine"));
    }

    #[tokio::test]
    async fn only_the_framed_body_is_forwarded() {
        let mut out = Vec::new();
        let rest: &[u8] = b"4\r\nabcd\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
        send(
            rest,
            tokio::io::empty(),
            &mut out,
            "H\r\n\r\n",
            Body::Chunked,
        )
        .await
        .unwrap();
        assert_eq!(out, b"H\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
        let mut out = Vec::new();
        send(b"abcdef", tokio::io::empty(), &mut out, "", Body::Length(3))
            .await
            .unwrap();
        assert_eq!(out, b"abc");
        let mut out = Vec::new();
        assert!(
            send(
                b"3\r\nabcd\r\n0\r\n\r\n",
                tokio::io::empty(),
                &mut out,
                "",
                Body::Chunked
            )
            .await
            .is_err()
        );
        let mut out = Vec::new();
        assert!(
            send(
                b"+4\r\nabcd\r\n0\r\n\r\n",
                tokio::io::empty(),
                &mut out,
                "",
                Body::Chunked
            )
            .await
            .is_err()
        );
        assert!(
            send(
                b"ab",
                tokio::io::empty(),
                &mut Vec::new(),
                "",
                Body::Length(3)
            )
            .await
            .is_err()
        );
    }
}
