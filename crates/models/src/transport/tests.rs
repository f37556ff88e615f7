use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request's head, read from a fresh connection on `l`; answered with `reply`.
async fn answer_once(l: &TcpListener, reply: &str) -> String {
    let (mut s, _) = l.accept().await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    s.write_all(reply.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn the_key_never_follows_a_redirect_off_the_upstream() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = elsewhere.local_addr().unwrap();
    let url = format!("http://{}/v1/messages", upstream.local_addr().unwrap());
    let send = tokio::spawn(async move {
        super::client()
            .unwrap()
            .post(url)
            .header("x-api-key", "sk-upstream-secret")
            .body("{}")
            .send()
            .await
    });
    let first = answer_once(
        &upstream,
        &format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{to}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(first.contains("sk-upstream-secret"), "{first}");
    // Were the redirect followed, the key would arrive here next.
    let followed =
        tokio::time::timeout(std::time::Duration::from_millis(500), elsewhere.accept()).await;
    assert!(followed.is_err(), "the client followed the redirect");
    let resp = send.await.unwrap().unwrap();
    assert_eq!(resp.status(), 307);
}
