//! An allow-listing HTTP proxy on a Unix socket: `CONNECT host:port` tunnels (HTTPS and
//! anything else over TCP) and absolute-form plain-HTTP requests. The socket is bind-mounted
//! into one sandbox, whose network namespace has no other way out.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

use crate::{Grant, Interceptor, Policy, Substitution};

/// What a proxy adds to the requests leaving its sandbox: repositories' credentials (`Grant`)
/// and secrets in place of their placeholders (`Substitution`). HTTPS requests need
/// `intercept`; without it, tunnels pass through untouched and get nothing.
#[derive(Debug, Default, Clone)]
pub struct Injections {
    pub grants: Vec<Grant>,
    pub substitutions: Vec<Substitution>,
    pub intercept: Option<Arc<Interceptor>>,
}

impl Injections {
    /// Whether a sandbox's HTTPS requests go through interception (and it must trust its CA).
    pub fn intercepts(&self) -> bool {
        self.grants.iter().any(Grant::https) || !self.substitutions.is_empty()
    }
}

/// Largest request head accepted from the sandbox.
const MAX_HEAD: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one sandbox may hold open through its proxy at once; more wait.
const MAX_CONNECTIONS: usize = 128;

/// A running proxy; it stops and removes its socket when dropped.
pub struct Proxy {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on `path` (which must not exist) and serve `policy`, adding `add` to the requests
    /// it covers (a grant's requests are let through whatever the allow-list says).
    pub fn bind(path: &Path, policy: Policy, add: Injections) -> std::io::Result<Proxy> {
        let listener = UnixListener::bind(path)?;
        // Whoever may connect uses this sandbox's allow-list: its owner alone, until the
        // provider hands it to the sandbox's user.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let rules = Arc::new(Rules {
            policy,
            grants: add.grants,
            subs: add.substitutions,
            intercept: add.intercept,
        });
        // A sandbox must not exhaust agentd's file descriptors through its proxy.
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let rules = rules.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = serve(conn, &rules).await {
                        tracing::debug!(error = %e, "egress connection ended");
                    }
                });
            }
        });
        Ok(Proxy {
            path: path.to_owned(),
            task,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one proxy enforces and adds.
struct Rules {
    policy: Policy,
    grants: Vec<Grant>,
    subs: Vec<Substitution>,
    intercept: Option<Arc<Interceptor>>,
}

async fn reply<S: AsyncWrite + Unpin>(
    conn: &mut S,
    status: &str,
    msg: &str,
) -> std::io::Result<()> {
    let body = format!("{msg}\n");
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

async fn serve(mut conn: UnixStream, rules: &Rules) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let Some(head_end) = read_head(&mut conn, &mut buf).await? else {
        return Ok(());
    };
    serve_head(conn, rules, buf, head_end).await
}

/// Read until the end of the request head, within `HEAD_TIMEOUT`; its length, or None if the
/// client left, sent too much or took too long (each told why, where it can still hear).
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    match tokio::time::timeout(HEAD_TIMEOUT, read_head_untimed(conn, buf)).await {
        Ok(read) => read,
        Err(_) => {
            reply(conn, "408 Request Timeout", "no request head in time").await?;
            Ok(None)
        }
    }
}

async fn read_head_untimed<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(i) = memchr::memmem::find(buf, b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_HEAD {
            reply(
                conn,
                "431 Request Header Fields Too Large",
                "request head too large",
            )
            .await?;
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve_head(
    mut conn: UnixStream,
    rules: &Rules,
    buf: Vec<u8>,
    head_end: usize,
) -> std::io::Result<()> {
    let head = match crate::http::parse(&buf[..head_end]) {
        Ok(h) => h,
        Err(why) => return reply(&mut conn, "400 Bad Request", why).await,
    };
    let rest = &buf[head_end..];
    if head.method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_host_port(head.target, 443) else {
            return reply(&mut conn, "400 Bad Request", "CONNECT needs host:port").await;
        };
        // Secrets go only to HTTPS on its usual port; a repository's grant names its own.
        let covered = rules.grants.iter().any(|g| g.covers(true, &host, port))
            || (port == 443 && rules.subs.iter().any(|s| s.applies_to(&host)));
        if covered && let Some(tls) = &rules.intercept {
            if let Err(d) = rules.policy.check_name(&host)
                && !rules.grants.iter().any(|g| g.covers(true, &host, port))
            {
                return reply(&mut conn, "403 Forbidden", &d.0).await;
            }
            if !rest.is_empty() {
                return reply(
                    &mut conn,
                    "400 Bad Request",
                    "data before the tunnel opened",
                )
                .await;
            }
            return intercept(conn, rules, tls, &host, port).await;
        }
        // A tunnel the proxy cannot look into gets no credential, so no grant opens it.
        let mut upstream = match open(&host, port, &rules.policy, false).await {
            Ok(s) => s,
            Err((status, msg)) => return reply(&mut conn, status, &msg).await,
        };
        conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        upstream.write_all(rest).await?;
        tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
        return Ok(());
    }
    let Some(after) = head.target.strip_prefix("http://") else {
        return reply(
            &mut conn,
            "400 Bad Request",
            "only absolute http:// URLs and CONNECT are proxied; use CONNECT for https",
        )
        .await;
    };
    let (authority, path) = match after.find(['/', '?']) {
        Some(i) if after.as_bytes()[i] == b'/' => (&after[..i], &after[i..]),
        Some(_) => return reply(&mut conn, "400 Bad Request", "bad URL").await,
        None => (after, "/"),
    };
    let Some((host, port)) = split_host_port(authority, 80) else {
        return reply(&mut conn, "400 Bad Request", "bad host in URL").await;
    };
    let grant = crate::grant::find(&rules.grants, false, &host, port, head.method, path);
    let upstream = match open(&host, port, &rules.policy, grant.is_some()).await {
        Ok(s) => s,
        Err((status, msg)) => return reply(&mut conn, status, &msg).await,
    };
    let host_header = authority.to_ascii_lowercase();
    // No secret is written into a request that crosses the network in the clear.
    forward(conn, upstream, &head, path, &host_header, grant, &[], rest).await
}

/// A CONNECT to an HTTPS repository with a grant: end the sandbox's TLS here, add the
/// credential to the request if it is one of git's for the repository, and send it on over TLS
/// checked against the real server. One request per connection, as for plain HTTP; a request
/// the grant does not cover reaches the host only if the allow-list names it.
async fn intercept(
    mut conn: UnixStream,
    rules: &Rules,
    tls: &Interceptor,
    host: &str,
    port: u16,
) -> std::io::Result<()> {
    let (Ok(server), Some(name)) = (tls.server(host), crate::intercept::server_name(host)) else {
        return reply(
            &mut conn,
            "502 Bad Gateway",
            &format!("cannot intercept {host}"),
        )
        .await;
    };
    conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    let mut inner = tokio_rustls::TlsAcceptor::from(server).accept(conn).await?;
    let mut buf = Vec::with_capacity(4096);
    let Some(head_end) = read_head(&mut inner, &mut buf).await? else {
        return Ok(());
    };
    let head = match crate::http::parse(&buf[..head_end]) {
        Ok(h) if h.target.starts_with('/') => h,
        Ok(_) => {
            return reply(
                &mut inner,
                "400 Bad Request",
                "expected an origin-form request",
            )
            .await;
        }
        Err(why) => return reply(&mut inner, "400 Bad Request", why).await,
    };
    let grant = crate::grant::find(&rules.grants, true, host, port, head.method, head.target);
    let tcp = match open(host, port, &rules.policy, grant.is_some()).await {
        Ok(s) => s,
        Err((status, msg)) => return reply(&mut inner, status, &msg).await,
    };
    let upstream = match tls.connector().connect(name, tcp).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("TLS to {host}:{port} failed: {e}");
            return reply(&mut inner, "502 Bad Gateway", &msg).await;
        }
    };
    let host_header = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let subs = if port == 443 {
        crate::substitute::for_host(&rules.subs, host)
    } else {
        Vec::new()
    };
    let rest = &buf[head_end..];
    forward(
        inner,
        upstream,
        &head,
        head.target,
        &host_header,
        grant,
        &subs,
        rest,
    )
    .await
}

/// Send one request on, with what the proxy adds (`host` replaces the sandbox's `Host` when a
/// grant or a secret goes with the request), and its response back.
#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts, each from its own place in the two callers"
)]
async fn forward<C, U>(
    mut client: C,
    upstream: U,
    head: &crate::http::Head<'_>,
    target: &str,
    host: &str,
    grant: Option<&Grant>,
    subs: &[&Substitution],
    rest: &[u8],
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let subs: Vec<&Substitution> = if crate::http::substitutes(head.method) {
        subs.to_vec()
    } else {
        Vec::new()
    };
    let mut add = crate::http::Adds {
        host: (grant.is_some() || !subs.is_empty()).then_some(host),
        authorization: grant.map(Grant::authorization),
        subs: &subs,
        length: None,
    };
    match crate::http::substituted_body(&mut client, rest, head.body, &subs).await? {
        Some(body) => {
            let n = body.len() as u64;
            add.length = Some(n);
            let out = crate::http::rewrite(head, target, &add);
            let framed = crate::http::Body::Length(n);
            crate::http::exchange(client, upstream, &out, &body, framed).await
        }
        None => {
            let out = crate::http::rewrite(head, target, &add);
            crate::http::exchange(client, upstream, &out, rest, head.body).await
        }
    }
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((s.to_owned(), default_port)),
    }
    .filter(|(h, _)| !h.is_empty())
}

/// Resolve, check against the policy, connect. Errors carry the status the sandbox sees. A
/// `granted` host (a session's repository) is reachable whatever the allow-list names, but its
/// addresses are checked as any other's.
async fn open(
    host: &str,
    port: u16,
    policy: &Policy,
    granted: bool,
) -> Result<TcpStream, (&'static str, String)> {
    if let Err(d) = policy.check_name(host)
        && !granted
    {
        tracing::info!(host, port, "egress refused");
        return Err(("403 Forbidden", d.0));
    }
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| ("502 Bad Gateway", format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    if let Err(d) = policy.check_addresses(host, &ips) {
        tracing::info!(host, port, "egress refused");
        return Err(("403 Forbidden", d.0));
    }
    // Connect to the addresses just checked, never to a fresh lookup.
    let mut last = String::from("no addresses");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err((
        "502 Bad Gateway",
        format!("cannot connect to {host}:{port}: {last}"),
    ))
}
