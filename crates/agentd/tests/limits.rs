//! The real binary's connection limits, over raw TCP: clients that never finish a request head
//! are dropped, and past the connection cap newcomers wait for a slot. No sandboxes needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentd");
const KEY: &str = "sk-limits-test";
const PARTIAL: &[u8] = b"GET /v1/agents HTTP/1.1\r\nHost: agentd\r\n";

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--sandbox", "none", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env("AGENTD_API_KEY", KEY)
        .env("AGENTD_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "agentd did not start");
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("agentd: listening on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr,
        _dir: dir,
    }
}

fn slow_client(s: &Server) -> TcpStream {
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.write_all(PARTIAL).unwrap();
    c
}

/// Sends a whole request on `c` and reads the status line, or `None` if nothing came in `wait`.
fn request(mut c: TcpStream, wait: Duration) -> Option<String> {
    c.set_read_timeout(Some(wait)).unwrap();
    let req = format!(
        "GET /v1/agents HTTP/1.1\r\nHost: agentd\r\nx-api-key: {KEY}\r\nConnection: close\r\n\r\n"
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    match BufReader::new(c).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_dropped() {
    let s = serve(&["--header-timeout-secs", "1"]);
    let slow: Vec<TcpStream> = (0..50).map(|_| slow_client(&s)).collect();
    // The others are still served while those hang.
    let ok = request(TcpStream::connect(&s.addr).unwrap(), Duration::from_secs(5));
    assert!(ok.as_deref().is_some_and(|l| l.contains(" 200 ")), "{ok:?}");
    let started = Instant::now();
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        // Closed by the server: the read ends (maybe after a 408) instead of timing out.
        let r = c.read_to_end(&mut rest);
        assert!(
            r.is_ok()
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the connection was not closed: {r:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn past_the_connection_cap_a_new_client_waits_for_a_slot() {
    let s = serve(&["--max-connections", "3", "--header-timeout-secs", "60"]);
    let mut slow: Vec<TcpStream> = (0..3).map(|_| slow_client(&s)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let waiting = TcpStream::connect(&s.addr).unwrap();
    let probe = waiting.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(request(probe, Duration::from_secs(20))));
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "a fourth connection was served past --max-connections 3"
    );
    // A slot frees, and the one waiting is served.
    drop(slow.pop());
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        got.as_deref().is_some_and(|l| l.contains(" 200 ")),
        "{got:?}"
    );
    drop(waiting);
}

#[test]
fn a_client_that_trickles_its_request_body_is_answered_and_dropped() {
    let s = serve(&["--body-timeout-secs", "1"]);
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let head = format!(
        "POST /v1/agents HTTP/1.1\r\nHost: agentd\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut reader = c.try_clone().unwrap();
    let started = Instant::now();
    // A byte every 100 ms: 1,000 of them would take 100 s.
    let trickle = std::thread::spawn(move || {
        for _ in 0..1000 {
            if c.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let r = reader.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        r.is_ok() || r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection was not closed"
    );
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(trickle);
    // A whole request is served as before.
    let ok = request(TcpStream::connect(&s.addr).unwrap(), Duration::from_secs(5));
    assert!(ok.as_deref().is_some_and(|l| l.contains(" 200 ")), "{ok:?}");
}
