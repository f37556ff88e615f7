//! The proxy and `fetch` against real HTTP servers on loopback, which only the operator's
//! ranges open (`operator_loopback`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use agentd_egress::{Cidr, Grant, Injections, Interceptor, Policy, Proxy, fetch};

fn grants(grants: Vec<Grant>, intercept: Option<std::sync::Arc<Interceptor>>) -> Injections {
    Injections {
        grants,
        intercept,
        ..Injections::default()
    }
}

/// What the operator opens for these tests, whose upstreams listen on loopback.
fn operator_loopback() -> Vec<Cidr> {
    vec!["127.0.0.1/32".parse().unwrap()]
}

/// `hosts`, with the operator's loopback range opened.
fn limited(hosts: &[&str]) -> Policy {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    Policy::limited(&hosts, false).with_operator_ranges(&operator_loopback())
}

/// A tiny HTTP server answering every request with `body` (or a redirect to `redirect`).
async fn upstream(body: &'static str, redirect: Option<String>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let redirect = redirect.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = match redirect {
                    Some(to) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    None => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

async fn through(sock: &std::path::Path, request: String) -> String {
    let mut c = UnixStream::connect(sock).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_proxy_forwards_allowed_hosts_and_refuses_the_rest() {
    let port = upstream("<p>hello from upstream</p>", None).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let _p = Proxy::bind(&sock, limited(&["127.0.0.1"]), Injections::default()).unwrap();

    let get = through(&sock, format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Connection: keep-alive\r\n\r\n")).await;
    assert!(
        get.starts_with("HTTP/1.1 200") && get.contains("hello from upstream"),
        "{get}"
    );

    let mut c = UnixStream::connect(&sock).await.unwrap();
    c.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200 Connection Established"));
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).contains("hello from upstream"));

    let denied = through(&sock, "CONNECT example.com:443 HTTP/1.1\r\n\r\n".into()).await;
    assert!(
        denied.starts_with("HTTP/1.1 403") && denied.contains("not in allowed_hosts"),
        "{denied}"
    );
    // localhost is the same machine, but not the name the policy lists.
    let other = through(
        &sock,
        format!("GET http://localhost:{port}/ HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
}

#[tokio::test]
async fn no_environment_reaches_the_host_machine_without_the_operator() {
    let port = upstream("secret admin page", None).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("p.sock");
    let named = Policy::limited(&["127.0.0.1".into(), "localhost".into()], false);
    for (i, policy) in [Policy::unrestricted(), named].into_iter().enumerate() {
        let sock = sock.with_extension(i.to_string());
        let _p = Proxy::bind(&sock, policy.clone(), Injections::default()).unwrap();
        // By address, and by a name that resolves to it.
        for host in ["127.0.0.1", "localhost"] {
            let r = through(&sock, format!("GET http://{host}:{port}/ HTTP/1.1\r\n\r\n")).await;
            assert!(
                r.starts_with("HTTP/1.1 403") && r.contains("no environment may reach"),
                "{host}: {r}"
            );
            assert!(!r.contains("secret admin page"));
            let e = fetch(&format!("http://{host}:{port}/"), &policy, 1000)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("no environment may reach"), "{e}");
        }
    }
}

#[tokio::test]
async fn fetch_follows_policy_on_every_redirect() {
    let port = upstream(
        "<html><body><h1>Docs</h1><script>x()</script></body></html>",
        None,
    )
    .await;
    let allowed = limited(&["127.0.0.1"]);
    let text = fetch(&format!("http://127.0.0.1:{port}/"), &allowed, 10_000)
        .await
        .unwrap();
    assert_eq!(text.trim(), "Docs");
    let e = fetch(
        &format!("http://127.0.0.1:{port}/"),
        &Policy::none(),
        10_000,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("not in allowed_hosts"), "{e}");
    // A redirect from an allowed host to a refused one is refused.
    let hop = upstream("", Some(format!("http://localhost:{port}/"))).await;
    let e = fetch(&format!("http://127.0.0.1:{hop}/"), &allowed, 10_000)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("localhost"), "{e}");
    let e = fetch("file:///etc/passwd", &allowed, 10).await.unwrap_err();
    assert!(e.to_string().contains("only http"), "{e}");
}

#[test]
fn the_proxy_socket_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let _p = Proxy::bind(&sock, Policy::none(), Injections::default()).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

/// Answer one request with what it sent (its head, and what came with it in one read).
async fn answer_with_head<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let body = String::from_utf8_lossy(&buf[..n]).into_owned();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A server that answers every request with the request head it received.
async fn echo_head() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move { answer_with_head(&mut s).await });
        }
    });
    port
}

#[tokio::test]
async fn a_grant_adds_its_credential_to_its_repository_s_requests_only() {
    let port = echo_head().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let grant = agentd_egress::Grant::basic(false, "127.0.0.1", port, "/acme/repo", "x", "s3cret");
    // An allow-list that names nothing: the grant alone opens its host.
    let _p = Proxy::bind(&sock, limited(&[]), grants(vec![grant], None)).unwrap();
    let get = |path: &str, extra: &str| {
        format!("GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
    };
    let expected = "Authorization: Basic eDpzM2NyZXQ=";
    let refs = "/acme/repo.git/info/refs?service=git-upload-pack";

    let ok = through(&sock, get(refs, "")).await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains(expected),
        "{ok}"
    );
    // The sandbox's own Authorization and Host are replaced, not sent beside them.
    let mine = through(
        &sock,
        format!(
            "GET http://127.0.0.1:{port}{refs} HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Basic bWU6bWU=\r\n\r\n"
        ),
    )
    .await;
    assert!(
        mine.contains(expected) && !mine.contains("bWU6bWU=") && !mine.contains("evil"),
        "{mine}"
    );
    // Nothing but git's requests for the repository: the grant opens no other path.
    for other in [
        "/acme/other/info/refs?service=git-upload-pack",
        "/acme/repo/../other/info/refs?service=git-upload-pack",
        "/acme/repo/README",
    ] {
        let out = through(&sock, get(other, "")).await;
        assert!(out.starts_with("HTTP/1.1 403"), "{other}: {out}");
    }
    // A head a server could read as two requests never leaves the proxy.
    let smuggled = through(
        &sock,
        format!("GET http://127.0.0.1:{port}{refs} HTTP/1.1\r\nX: a\n\nPOST /c HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(smuggled.starts_with("HTTP/1.1 400"), "{smuggled}");
    // Another port of the same host is neither granted nor allowed.
    let refused = through(
        &sock,
        format!(
            "GET http://127.0.0.1:{}{refs} HTTP/1.1\r\n\r\n",
            port.wrapping_add(1)
        ),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    // Where the allow-list names the host, other requests go through, without the credential.
    let sock2 = dir.path().join("open.sock");
    let grant = agentd_egress::Grant::basic(false, "127.0.0.1", port, "/acme/repo", "x", "s3cret");
    let _p2 = Proxy::bind(&sock2, limited(&["127.0.0.1"]), grants(vec![grant], None)).unwrap();
    for (method, path) in [
        ("GET", "/acme/other/info/refs?service=git-upload-pack"),
        ("TRACE", refs),
    ] {
        let out = through(
            &sock2,
            format!("{method} http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200") && !out.contains("Authorization"),
            "{method} {path}: {out}"
        );
    }
}

/// A TLS server for `127.0.0.1` whose certificate a CA of its own signs; answers every request
/// with the request head it received. Returns its port and the CA's roots.
async fn tls_echo_head() -> (u16, rustls::RootCertStore) {
    tls_echo_head_on("127.0.0.1", 0)
        .await
        .expect("bind 127.0.0.1:0")
}

/// `tls_echo_head` on `host:port`; None where it cannot be bound (a privileged port, not root).
async fn tls_echo_head_on(host: &str, port: u16) -> Option<(u16, rustls::RootCertStore)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = TcpListener::bind((host, port)).await.ok()?;
    let port = l.local_addr().ok()?.port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(s).await {
                    answer_with_head(&mut s).await;
                }
            });
        }
    });
    Some((port, roots))
}

/// CONNECT through the proxy at `sock`, then TLS trusting `roots`, then `request`.
async fn tls_through(
    sock: &std::path::Path,
    port: u16,
    roots: rustls::RootCertStore,
    request: &str,
) -> Result<String, String> {
    tls_through_to(sock, "127.0.0.1", port, roots, request).await
}

async fn tls_through_to(
    sock: &std::path::Path,
    host: &str,
    port: u16,
    roots: rustls::RootCertStore,
    request: &str,
) -> Result<String, String> {
    let mut c = UnixStream::connect(sock).await.unwrap();
    c.write_all(format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    c.read_exact(&mut head).await.unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, c)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn an_https_grant_is_added_behind_the_proxy_s_own_tls_and_the_server_is_checked() {
    let (port, server_roots) = tls_echo_head().await;
    let tls =
        std::sync::Arc::new(agentd_egress::Interceptor::with_roots(server_roots.clone()).unwrap());
    let mut sandbox_roots = rustls::RootCertStore::empty();
    let pem = tls.ca_pem();
    let der = pem_body(&pem);
    sandbox_roots.add(der.into()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let grant = agentd_egress::Grant::basic(true, "127.0.0.1", port, "/acme/repo", "x", "s3cret");
    let _p = Proxy::bind(&sock, limited(&[]), grants(vec![grant], Some(tls.clone()))).unwrap();

    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let refs = "/acme/repo/info/refs?service=git-upload-pack";
    let ok = tls_through(&sock, port, sandbox_roots.clone(), &req(refs))
        .await
        .unwrap();
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("Authorization: Basic eDpzM2NyZXQ="),
        "{ok}"
    );
    // Inside the tunnel as outside: no other path gets the credential, or through at all.
    let other = tls_through(
        &sock,
        port,
        sandbox_roots.clone(),
        &req("/acme/other/info/refs"),
    )
    .await
    .unwrap();
    assert!(
        other.starts_with("HTTP/1.1 403") && !other.contains("eDpzM2NyZXQ="),
        "{other}"
    );
    // The sandbox does not trust the server's own CA: only the proxy's certificate is seen.
    assert!(
        tls_through(&sock, port, server_roots, &req("/acme/repo"))
            .await
            .is_err()
    );

    // A proxy whose interceptor does not trust the server refuses to send the token on.
    let wary = std::sync::Arc::new(
        agentd_egress::Interceptor::with_roots(rustls::RootCertStore::empty()).unwrap(),
    );
    let sock2 = dir.path().join("wary.sock");
    let grant = agentd_egress::Grant::basic(true, "127.0.0.1", port, "/acme/repo", "x", "s3cret");
    let _p2 = Proxy::bind(
        &sock2,
        limited(&[]),
        grants(vec![grant], Some(wary.clone())),
    )
    .unwrap();
    let mut roots2 = rustls::RootCertStore::empty();
    roots2.add(pem_body(&wary.ca_pem()).into()).unwrap();
    let refused = tls_through(&sock2, port, roots2, &req(refs)).await.unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 502") && !refused.contains("eDpzM2NyZXQ="),
        "{refused}"
    );
}

/// The DER bytes of a one-certificate PEM.
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test]
async fn no_secret_is_written_into_plain_http() {
    let port = echo_head().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let add = Injections {
        substitutions: vec![agentd_egress::Substitution::new(
            "agentd-ph-API_KEY-1234".into(),
            "real-secret".into(),
            true,
            true,
            None,
        )],
        ..Injections::default()
    };
    let _p = Proxy::bind(&sock, limited(&["127.0.0.1"]), add).unwrap();
    let out = through(
        &sock,
        format!(
            "GET http://127.0.0.1:{port}/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: agentd-ph-API_KEY-1234\r\n\r\n"
        ),
    )
    .await;
    assert!(
        out.contains("X-Api-Key: agentd-ph-API_KEY-1234") && !out.contains("real-secret"),
        "{out}"
    );
}

/// Over HTTPS on its usual port (443: run as root, as CI is; skipped where it cannot be bound):
/// the secret is written on its hosts, in headers and bodies, with `Host` the proxy's; not for
/// TRACE, not for another host.
#[tokio::test]
async fn over_https_a_secret_is_written_behind_the_proxy_s_own_tls() {
    let Some((port, server_roots)) = tls_echo_head_on("127.0.0.3", 443).await else {
        eprintln!("skipped: cannot listen on 127.0.0.3:443 here");
        return;
    };
    let tls = std::sync::Arc::new(Interceptor::with_roots(server_roots).unwrap());
    let mut sandbox_roots = rustls::RootCertStore::empty();
    sandbox_roots.add(pem_body(&tls.ca_pem()).into()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let add = Injections {
        substitutions: vec![agentd_egress::Substitution::new(
            "PH-TOKEN".into(),
            "real-secret".into(),
            true,
            true,
            Some(vec!["127.0.0.3".into()]),
        )],
        intercept: Some(tls),
        ..Injections::default()
    };
    let policy = Policy::limited(&["127.0.0.3".to_owned()], false)
        .with_operator_ranges(&["127.0.0.0/8".parse().unwrap()]);
    let _p = Proxy::bind(&sock, policy, add).unwrap();
    let send = |req: String| {
        let (sock, roots) = (sock.clone(), sandbox_roots.clone());
        async move {
            tls_through_to(&sock, "127.0.0.3", port, roots, &req)
                .await
                .unwrap()
        }
    };
    let body = "{\"k\": \"PH-TOKEN\"}";
    let out = send(format!(
        "POST /x HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer PH-TOKEN\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(out.contains("Authorization: Bearer real-secret"), "{out}");
    assert!(
        out.contains("{\"k\": \"real-secret\"}") && !out.contains("PH-TOKEN"),
        "{out}"
    );
    assert!(
        out.contains("Host: 127.0.0.3\r\n") && !out.contains("evil.example"),
        "{out}"
    );
    let trace = send("TRACE /x HTTP/1.1\r\nAuthorization: Bearer PH-TOKEN\r\n\r\n".into()).await;
    assert!(
        trace.contains("PH-TOKEN") && !trace.contains("real-secret"),
        "{trace}"
    );
}
