//! The real binary: `serve`, then `apply`, `run`, `sessions` and `keys` against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agentd");
const KEY: &str = "sk-cli-test";

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // As root, workspaces are filesystems of their own, mounted until their session is
        // deleted; a killed server leaves them, and the data dir could not be removed.
        let dir = self._dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&dir) {
                let _ = Command::new("umount").args(["--lazy", m]).status();
            }
        }
    }
}

fn serve() -> Server {
    serve_with(&[])
}

fn serve_with(env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    // Like a data dir the sandbox user can reach, so agentd keeps workspaces inside it rather
    // than under /var/lib/agentd (as it must for a private one when run as root).
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(
        dir.path().join("scripts/tool.yaml"),
        "turns:\n  - tool_use: {name: lookup, input: {q: x}}\n  - text: done\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scripts/builder.yaml"),
        "turns:\n  - tool_use: {name: bash, input: {command: 'echo built > out.txt && id -un'}}\n  - tool_use: {name: read, input: {file_path: out.txt}}\n  - text: finished\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scripts/lead.yaml"),
        "turns:\n  - content:\n      - tool_use: {name: start_thread, input: {agent: researcher, message: find facts}}\n      - tool_use: {name: start_thread, input: {agent: critic, message: find flaws}}\n  - text: waiting\n  - echo: true\n",
    )
    .unwrap();
    // More than a small workspace quota can hold, written by bash.
    std::fs::write(
        dir.path().join("scripts/bomb.yaml"),
        "turns:\n  - tool_use: {name: bash, input: {command: 'dd if=/dev/zero of=bomb bs=1M count=64 2>&1 | grep -o \"No space left on device\" | head -1; echo wrote $(( $(stat -c %s bomb) >> 20 )) MiB'}}\n  - text: done\n",
    )
    .unwrap();
    // A tool call that keeps its sandbox at work, saying when it has started.
    std::fs::write(
        dir.path().join("scripts/busy.yaml"),
        "turns:\n  - tool_use: {name: bash, input: {command: 'touch started && sleep 30'}}\n  - text: done\n",
    )
    .unwrap();
    // A worker slow enough that its reply comes after the lead's turn that started it.
    std::fs::write(
        dir.path().join("scripts/slow-echo.yaml"),
        "delay_ms: 300\nturns:\n  - echo: true\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("AGENTD_API_KEY", KEY)
        .env("AGENTD_LOG", "warn")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        assert!(Instant::now() < deadline, "agentd did not start");
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("agentd: listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        _dir: dir,
    }
}

fn agentd(s: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("AGENTD_URL", &s.url)
        .env("AGENTD_API_KEY", KEY)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn apply_run_and_inspect_a_session() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "a.yaml",
        "kind: agent\nname: echo\nmodel: scripted/echo\n---\nkind: environment\nname: default\n",
    );

    let out = agentd(&s, &["apply", "-f", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("agent \"echo\" created"), "{o}");
    assert!(o.contains("environment \"default\" created"), "{o}");

    let out = agentd(&s, &["apply", "-f", &file]);
    let o = text(&out.stdout);
    assert!(
        o.contains("agent \"echo\" unchanged") && o.contains("version 1"),
        "{o}"
    );

    let changed = write(
        tmp.path(),
        "b.yaml",
        "kind: agent\nname: echo\nmodel: scripted/echo\nsystem: now with a prompt\n",
    );
    let o = text(&agentd(&s, &["apply", "-f", &changed]).stdout);
    assert!(o.contains("version 1 -> 2"), "{o}");

    let out = agentd(&s, &["run", "echo", "hello world"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: hello world");
    assert!(text(&out.stderr).contains("[idle: end_turn]"));

    let ls = text(&agentd(&s, &["sessions", "ls"]).stdout);
    let sid = ls
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(sid.starts_with("sesn_"), "{ls}");
    let events = text(&agentd(&s, &["sessions", "events", &sid]).stdout);
    let kinds: Vec<&str> = events
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        kinds,
        [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.usage",
            "session.status_idle"
        ]
    );
    let show = text(&agentd(&s, &["sessions", "show", &sid]).stdout);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["status"], "idle");
    assert_eq!(v["agent"]["version"], 2);
}

#[test]
fn run_exits_non_zero_when_the_agent_waits_for_a_tool() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "t.yaml",
        "kind: agent\nname: tooly\nmodel: scripted/tool\ntools:\n  - type: custom\n    name: lookup\n    description: look things up\n    input_schema: {type: object}\n",
    );
    assert!(agentd(&s, &["apply", "-f", &file]).status.success());
    let out = agentd(&s, &["run", "tooly", "go"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("tool call: lookup"), "{err}");
    assert!(err.contains("requires_action"), "{err}");
}

#[test]
fn yaml_errors_and_bad_models_are_reported_clearly() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "bad.yaml",
        "kind: agent\nname: a\nmodel: scripted/echo\ntools: 5\n",
    );
    let out = agentd(&s, &["apply", "-f", &file]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{file}:4:8: tools: invalid type")),
        "{err}"
    );

    let file = write(tmp.path(), "m.yaml", "kind: agent\nname: a\nmodel: gpt-x\n");
    let out = agentd(&s, &["apply", "-f", &file]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 400") && err.contains("model:"), "{err}");

    let out = Command::new(BIN)
        .args(["sessions", "ls"])
        .env("AGENTD_URL", &s.url)
        .env("AGENTD_API_KEY", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("HTTP 401"));
}

#[test]
fn keys_create_mints_a_key_the_server_accepts_in_its_own_workspace() {
    let s = serve();
    let out = Command::new(BIN)
        .args(["keys", "create", "--workspace", "other", "--data-dir"])
        .arg(s._dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_owned();
    assert!(key.starts_with("sk-agentd-"));
    let out = Command::new(BIN)
        .args(["sessions", "ls"])
        .env("AGENTD_URL", &s.url)
        .env("AGENTD_API_KEY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = Command::new(BIN)
        .args(["keys", "ls", "--data-dir"])
        .arg(s._dir.path())
        .output()
        .unwrap();
    let ls = text(&ls.stdout);
    assert!(
        ls.contains("\tother\t") && ls.contains("\tdefault\t"),
        "{ls}"
    );
    assert!(!ls.contains(&key), "keys ls must never print secrets");
}

#[test]
fn built_in_tools_run_in_a_sandbox_over_the_session_workspace() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "b.yaml",
        "kind: agent\nname: builder\nmodel: scripted/builder\ntools:\n  - type: agent_toolset_20260401\n",
    );
    assert!(agentd(&s, &["apply", "-f", &file]).status.success());
    let out = agentd(&s, &["run", "builder", "build it"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("tool: bash("), "{err}");
    assert!(err.contains("tool result: sandbox"), "{err}");
    assert!(err.contains("tool result: built"), "{err}");
    assert_eq!(text(&out.stdout).trim(), "finished");
    let sid = text(&agentd(&s, &["sessions", "ls"]).stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let ws = s
        ._dir
        .path()
        .join("sandbox/workspaces")
        .join(&sid)
        .join("out.txt");
    assert_eq!(std::fs::read_to_string(ws).unwrap(), "built\n");
    // The internal bookkeeping event never reaches clients.
    let events = text(&agentd(&s, &["sessions", "events", &sid, "--json"]).stdout);
    assert!(!events.contains("internal."), "{events}");
    assert_eq!(events.matches("\"agent.tool_result\"").count(), 2);
}

/// This machine's address on its outward interface: a host the sandbox can only reach
/// through the egress proxy (its own loopback is not the host's).
fn outward_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("10.255.255.255:9").unwrap();
    let ip = s.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback(),
        "this test needs a non-loopback interface"
    );
    ip
}

/// A server whose operator opened `ip`, likely private, to environments that name it.
fn serve_opening(ip: std::net::IpAddr) -> Server {
    serve_with(&[("AGENTD_EGRESS_ALLOW_PRIVATE", &ip.to_string())])
}

/// A one-line HTTP server on every interface.
fn upstream() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "hello-from-upstream";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn the_network_policy_is_the_only_way_out() {
    let ip = outward_ip();
    let s = serve_opening(ip);
    let port = upstream();
    let via_proxy = format!(
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{ip}:{port}/', timeout=5).read().decode())\" 2>&1 | tail -1"
    );
    let direct = format!(
        "python3 -c \"import socket; socket.create_connection(('{ip}', {port}), 3); print('DIRECT-OK')\" 2>&1 | tail -1"
    );
    std::fs::write(
        s._dir.path().join("scripts/net.yaml"),
        format!(
            "turns:\n  - tool_use: {{name: bash, input: {{command: {via_proxy:?}}}}}\n  - tool_use: {{name: bash, input: {{command: {direct:?}}}}}\n  - tool_use: {{name: web_fetch, input: {{url: 'http://{ip}:{port}/'}}}}\n  - text: checked\n"
        ),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "n.yaml",
        &format!(
            "kind: agent\nname: net\nmodel: scripted/net\ntools:\n  - type: agent_toolset_20260401\n---\nkind: environment\nname: open\nconfig:\n  type: cloud\n  networking:\n    type: limited\n    allowed_hosts: ['{ip}']\n---\nkind: environment\nname: closed\nconfig:\n  type: cloud\n  networking:\n    type: limited\n    allowed_hosts: []\n"
        ),
    );
    assert!(agentd(&s, &["apply", "-f", &file]).status.success());

    let out = agentd(&s, &["run", "net", "go", "--env", "open"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let results: Vec<&str> = err.lines().filter(|l| l.starts_with("tool ")).collect();
    assert_eq!(results.len(), 3, "{err}");
    assert!(
        results[0].contains("hello-from-upstream"),
        "through the proxy: {err}"
    );
    assert!(
        !results[1].contains("DIRECT-OK") && results[1].contains("unreachable"),
        "direct: {err}"
    );
    assert!(
        results[2].contains("hello-from-upstream"),
        "web_fetch: {err}"
    );

    let out = agentd(&s, &["run", "net", "go", "--env", "closed"]);
    let err = text(&out.stderr);
    let results: Vec<&str> = err.lines().filter(|l| l.starts_with("tool ")).collect();
    assert_eq!(results.len(), 3, "{err}");
    assert!(
        results[0].contains("403") && !results[0].contains("hello-from-upstream"),
        "{err}"
    );
    assert!(!results[1].contains("DIRECT-OK"), "{err}");
    assert!(
        results[2].starts_with("tool error") && results[2].contains("not in allowed_hosts"),
        "{err}"
    );
}

/// Serve `bytes` for every request, on every interface.
fn serve_bytes(bytes: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = s.write_all(&bytes);
        }
    });
    port
}

/// A pure-Python wheel whose module says hello.
fn demo_wheel(dir: &Path) -> Vec<u8> {
    let out = dir.join("agentd_demo-0.1-py3-none-any.whl");
    let script = format!(
        r#"import zipfile
files = {{
  "agentd_demo/__init__.py": "GREETING = 'hello from a package'\n",
  "agentd_demo-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: agentd-demo\nVersion: 0.1\n",
  "agentd_demo-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: agentd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
files["agentd_demo-0.1.dist-info/RECORD"] = "".join(f"{{n}},,\n" for n in files) + "agentd_demo-0.1.dist-info/RECORD,,\n"
with zipfile.ZipFile({out:?}, "w") as z:
    for n, body in files.items():
        z.writestr(n, body)
"#
    );
    let ok = Command::new("python3")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot build the test wheel");
    std::fs::read(out).unwrap()
}

#[test]
fn environment_packages_are_installed_when_the_sandbox_is_made() {
    let ip = outward_ip();
    let s = serve_opening(ip);
    let tmp = tempfile::tempdir().unwrap();
    let port = serve_bytes(demo_wheel(tmp.path()));
    std::fs::write(
        s._dir.path().join("scripts/pkg.yaml"),
        "turns:\n  - tool_use: {name: bash, input: {command: \"python3 -c 'import agentd_demo; print(agentd_demo.GREETING)'\"}}\n  - text: done\n",
    )
    .unwrap();
    let file = write(
        tmp.path(),
        "p.yaml",
        &format!(
            "kind: agent\nname: pkg\nmodel: scripted/pkg\ntools:\n  - type: agent_toolset_20260401\n---\nkind: environment\nname: with-pip\nconfig:\n  type: cloud\n  networking: {{type: limited, allowed_hosts: ['{ip}']}}\n  packages:\n    pip: ['http://{ip}:{port}/agentd_demo-0.1-py3-none-any.whl']\n---\nkind: environment\nname: with-apt\nconfig:\n  type: cloud\n  packages:\n    apt: [bash, agentd-no-such-package]\n"
        ),
    );
    assert!(agentd(&s, &["apply", "-f", &file]).status.success());
    let out = agentd(&s, &["run", "pkg", "go", "--env", "with-pip"]);
    let err = text(&out.stderr);
    assert!(err.contains("tool result: hello from a package"), "{err}");

    // apt packages come from the host: present ones pass, a missing one is named.
    let out = agentd(&s, &["run", "pkg", "go", "--env", "with-apt"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("tool error") && err.contains("host lacks: agentd-no-such-package."),
        "{err}"
    );
    assert!(
        err.contains("apt-get install agentd-no-such-package"),
        "{err}"
    );
}

/// An OpenAI-compatible chat-completions server streaming one fixed answer.
fn openai_upstream() -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head and the JSON body (its length is in the head).
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            let body = String::from_utf8_lossy(&req);
            assert!(body.contains("\"model\":\"small-model\""), "{body}");
            let chunks = [
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello from "}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"an OpenAI-compatible server"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6}}"#,
            ];
            let mut out = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
            );
            for c in chunks {
                out.push_str(&format!("data: {c}\n\n"));
            }
            out.push_str("data: [DONE]\n\n");
            let _ = s.write_all(out.as_bytes());
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn an_openai_compatible_server_is_a_model_provider() {
    let upstream = openai_upstream();
    let s = serve_with(&[("AGENTD_OPENAI_BASE_URL", &upstream)]);
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "o.yaml",
        "kind: agent\nname: local\nmodel: openai/small-model\n",
    );
    let out = agentd(&s, &["apply", "-f", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = agentd(&s, &["run", "local", "hi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "Hello from an OpenAI-compatible server"
    );
    let bad = write(
        tmp.path(),
        "b.yaml",
        "kind: agent\nname: nope\nmodel: vllm/x\n",
    );
    let err = text(&agentd(&s, &["apply", "-f", &bad]).stderr);
    assert!(
        err.contains("unknown provider") && err.contains("openai"),
        "{err}"
    );
}

#[test]
fn apply_resolves_a_roster_by_name_and_run_shows_the_threads() {
    let s = serve();
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "team.yaml",
        "kind: agent\nname: researcher\nmodel: scripted/slow-echo\n---\nkind: agent\nname: critic\nmodel: scripted/slow-echo\n---\nkind: agent\nname: lead\nmodel: scripted/lead\nmultiagent:\n  type: coordinator\n  agents: [researcher, critic]\n",
    );
    let out = agentd(&s, &["apply", "-f", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Applying again changes nothing: the names resolve to the same pinned versions.
    let again = text(&agentd(&s, &["apply", "-f", &file]).stdout);
    assert!(again.contains("agent \"lead\" unchanged"), "{again}");

    let out = agentd(&s, &["run", "lead", "review the plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let progress = text(&out.stderr);
    assert!(progress.contains("started: researcher]"), "{progress}");
    assert!(
        progress.contains("reply from critic: echo: find flaws"),
        "{progress}"
    );
    assert!(
        progress.contains("reply from researcher: echo: find facts"),
        "{progress}"
    );
    // The lead's last turn saw both replies.
    let answer = text(&out.stdout);
    assert!(
        answer.contains("echo: find facts") && answer.contains("echo: find flaws"),
        "{answer}"
    );

    let bad = write(
        tmp.path(),
        "bad.yaml",
        "kind: agent\nname: lead2\nmodel: scripted/lead\nmultiagent:\n  type: coordinator\n  agents: [nobody]\n",
    );
    let err = text(&agentd(&s, &["apply", "-f", &bad]).stderr);
    assert!(err.contains("no agent named \"nobody\""), "{err}");
}

#[test]
fn serve_gives_each_workspace_its_disk_quota_and_caps_the_sandboxes() {
    let s = serve_with(&[
        ("AGENTD_SANDBOX_DISK_MB", "16"),
        ("AGENTD_MAX_SANDBOXES", "1"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "b.yaml",
        "kind: agent\nname: bomber\nmodel: scripted/bomb\ntools:\n  - type: agent_toolset_20260401\n---\nkind: agent\nname: busy\nmodel: scripted/busy\ntools:\n  - type: agent_toolset_20260401\n",
    );
    assert!(agentd(&s, &["apply", "-f", &file]).status.success());
    let out = agentd(&s, &["run", "bomber", "fill the disk"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    if nix::unistd::geteuid().is_root() {
        assert!(err.contains("No space left on device"), "{err}");
        let mib: u64 = err
            .rsplit_once("wrote ")
            .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        assert!(mib <= 16, "{err}");
    } else {
        eprintln!("not root: the quota binds only write and edit; bash wrote {err}");
    }
    // The bomber's sandbox is idle now and makes way; one at work does not.
    let mut busy = Command::new(BIN)
        .args(["run", "busy", "work"])
        .env("AGENTD_URL", &s.url)
        .env("AGENTD_API_KEY", KEY)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let workspaces = s._dir.path().join("sandbox/workspaces");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(&workspaces)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("started").exists())
    {
        assert!(Instant::now() < deadline, "the busy session never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = agentd(&s, &["run", "bomber", "again"]);
    let err = text(&out.stderr);
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(err.contains("the most it allows at once"), "{err}");
}
