"""`environment_variable` credentials through the official SDK: the sandbox's environment holds
a placeholder under the credential's name, and the egress proxy writes the secret in its place
on HTTPS requests (port 443) to the credential's hosts only, in header values and, where the
credential allows it, bodies. The proxy ends the sandbox's TLS with its own CA, which the
sandbox trusts. Plain HTTP, other hosts and other ports get the placeholder. The secret never
reaches the sandbox, the log or the model.

The HTTPS server listens on 127.0.0.2:443, as root can (CI runs as root); elsewhere the test
is skipped."""

import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import pytest

from conftest import list_raw_events, run_bash_turn
from git_server import certificates

CLAUDE = "claude-sonnet-4-6"
TOOLSET = [{"type": "agent_toolset_20260401",
            "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}]
LOOPBACK = {"AGENTD_EGRESS_ALLOW_PRIVATE": "127.0.0.0/8"}


class Echo:
    """Records each request's headers and body; answers 200 "ok"."""

    def __init__(self, host: str, tls=None, port: int = 0):
        self.seen: list[dict] = []
        echo = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode(errors="replace")
                echo.seen.append({"headers": dict(self.headers), "body": body, "path": self.path})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = handle_one

        self.httpd = ThreadingHTTPServer((host, port), H)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.httpd.server_address[1]}/"
        if port == 443:
            self.url = f"{scheme}://{host}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def world(server_factory, fake_upstream, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = certificates(certs)
    try:
        https = Echo("127.0.0.2", (cert, key), port=443)
    except PermissionError:
        pytest.skip("cannot listen on 127.0.0.2:443 (not root)")
    allowed, other = Echo("127.0.0.2"), Echo("127.0.0.3")
    srv = server_factory(upstream=fake_upstream, env=LOOPBACK | {"SSL_CERT_FILE": str(ca)})
    yield {"server": srv, "allowed": allowed, "https": https, "other": other}
    for e in (allowed, https, other):
        e.close()


def run_bash(client, fake_upstream, sid: str, command: str, turn: int) -> str:
    return run_bash_turn(client, fake_upstream, sid, command, turn)[0]


def test_a_secret_is_written_in_place_of_its_placeholder_on_its_hosts_only(world, fake_upstream):
    client = world["server"].client()
    secret = f"sk-live-canary{secrets.token_hex(10)}"
    v = client.beta.vaults.create(display_name="api")
    client.beta.vaults.credentials.create(v.id, auth={
        "type": "environment_variable", "secret_name": "API_KEY", "secret_value": secret,
        "networking": {"type": "limited", "allowed_hosts": ["127.0.0.2"]},
        "injection_location": {"header": True, "body": True}})
    env = client.beta.environments.create(name="e", config={"type": "cloud", "networking": {"type": "unrestricted"}})
    agent = client.beta.agents.create(name="caller", model=CLAUDE, tools=TOOLSET)
    s = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[v.id])

    curl = "curl -s -S --max-time 20 -H \"X-Api-Key: $API_KEY\" -H 'Content-Type: application/json' -d \"{\\\"k\\\": \\\"$API_KEY\\\"}\""
    out = run_bash(client, fake_upstream, s.id,
                   f"echo key=$API_KEY; {curl} {world['allowed'].url}; echo; {curl} {world['https'].url}; echo; "
                   f"{curl} {world['other'].url}; echo", 1)
    assert "key=agentd-secret-api_key-" in out and out.count("ok") == 3, out
    assert secret not in out

    placeholder = out.split("key=", 1)[1].split()[0]
    (req,) = world["https"].seen
    assert req["headers"]["X-Api-Key"] == secret, req
    assert json.loads(req["body"]) == {"k": secret}, req
    # Plain HTTP crosses the network in the clear: no secret is written into it, even for an
    # allowed host; nor for a host the credential does not name.
    for name in ("allowed", "other"):
        (req,) = world[name].seen
        assert req["headers"]["X-Api-Key"] == placeholder and secret not in req["body"], (name, req)

    # Nowhere inside: files, environments, command lines; nor in the log or the model's requests.
    h = len(secret) // 2
    out = run_bash(client, fake_upstream, s.id,
                   f"a='{secret[:h]}'; b='{secret[h:]}'; s=\"$a$b\"; "
                   "echo hits=$(grep -rlsF -f <(printf '%s\\n' \"$s\") /workspace /tmp /etc /proc/[0-9]*/environ "
                   "/proc/[0-9]*/cmdline 2>/dev/null | wc -l)", 2)
    assert "hits=0" in out, out
    assert secret not in json.dumps(list_raw_events(client, s.id))
    for q in fake_upstream.requests:
        assert secret.encode() not in q.raw
    assert secret not in world["server"].log()

    # Narrowing the credential's hosts reaches the running session's next call.
    c = client.beta.vaults.credentials.list(v.id).data[0]
    client.beta.vaults.credentials.update(c.id, vault_id=v.id, auth={
        "type": "environment_variable", "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]}})
    out = run_bash(client, fake_upstream, s.id, f"{curl} {world['https'].url}", 3)
    # Not intercepted any more, the tunnel reaches the server itself, whose test CA the sandbox
    # does not trust: the request never leaves, with the secret or without.
    assert "certificate" in out and len(world["https"].seen) == 1, out


def test_a_secret_with_a_line_break_is_refused(world):
    client = world["server"].client()
    v = client.beta.vaults.create(display_name="api")
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.vaults.credentials.create(v.id, auth={
            "type": "environment_variable", "secret_name": "K", "secret_value": "a\r\nX-Evil: 1",
            "networking": {"type": "unrestricted"}})
    assert e.value.body["error"]["message"].startswith("auth.secret_value:"), e.value.body
    assert "X-Evil" not in e.value.body["error"]["message"]
