"""/v1/vaults and their credentials through the SDK: every endpoint, bad input, vault_ids on
sessions, the vault key (a wrong key stops agentd and loses nothing; rotate-key), OAuth refresh
through mcp_oauth_validate against loopback MCP and token servers, and canary secrets that must
not appear anywhere agentd writes or answers."""

import base64
import json
import os
import secrets
import stat
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import anthropic
import pytest
from anthropic.types.beta import BetaManagedAgentsDeletedVault, BetaManagedAgentsVault
from anthropic.types.beta.vaults import (
    BetaManagedAgentsCredential,
    BetaManagedAgentsCredentialValidation,
    BetaManagedAgentsDeletedCredential,
)

from conftest import all_pages, list_raw_events, make_agent, make_env, send_text, validate_model, wait_idle


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def canary(tag: str) -> str:
    return f"CANARY-{tag}-{secrets.token_hex(12)}"


class Loopback:
    """A tiny HTTP server on 127.0.0.1: an MCP server that accepts one bearer token (anything
    else is a 401) and an OAuth token endpoint that swaps one refresh token for a new pair."""

    def __init__(self):
        self.accept = None          # the bearer token the MCP server takes
        self.refresh_token = None   # the refresh token the token endpoint takes
        self.next_access = None     # what a good refresh hands out
        self.next_refresh = None
        self.token_status = 200     # force a failing token endpoint
        self.mcp_auth = []          # Authorization headers the MCP server saw
        self.token_forms = []       # form bodies (and Authorization) the token endpoint saw
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                if self.path.startswith("/mcp"):
                    auth = self.headers.get("authorization")
                    outer.mcp_auth.append(auth)
                    if auth == f"Bearer {outer.accept}":
                        self._send(200, {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18"}})
                    else:
                        self._send(401, {"error": "invalid_token"})
                elif self.path == "/token":
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    form["_authorization"] = self.headers.get("authorization")
                    outer.token_forms.append(form)
                    if outer.token_status != 200 or form.get("refresh_token") != outer.refresh_token:
                        self._send(outer.token_status if outer.token_status != 200 else 400,
                                   {"error": "invalid_grant"})
                        return
                    outer.accept = outer.next_access
                    self._send(200, {"access_token": outer.next_access, "token_type": "Bearer",
                                     "expires_in": 3600, "refresh_token": outer.next_refresh})
                else:
                    self._send(404, {})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


# The loopback MCP and token servers are reached only because the operator opened loopback,
# as agentd's own requests for a credential follow the sandboxes' egress rule.
LOOPBACK = {"AGENTD_EGRESS_ALLOW_PRIVATE": "127.0.0.0/8"}


@pytest.fixture
def keyed(server_factory, fake_upstream):
    """A server whose vault key is given by AGENTD_VAULT_KEY."""
    key = new_key()
    s = server_factory(upstream=fake_upstream, env={"AGENTD_VAULT_KEY": key} | LOOPBACK)
    s.vault_key = key
    return s


# ----------------------------------------------------------------------------- vaults


def test_vault_create_retrieve_update_list_archive_delete(client):
    v = client.beta.vaults.create(display_name="prod", metadata={"team": "a", "drop": "x"})
    assert v.id.startswith("vlt_") and v.type == "vault"
    assert v.display_name == "prod" and v.metadata == {"team": "a", "drop": "x"}
    assert v.archived_at is None
    validate_model(BetaManagedAgentsVault, client.beta.vaults.with_raw_response.retrieve(v.id).json())
    assert client.beta.vaults.retrieve(v.id) == v

    u = client.beta.vaults.update(v.id, display_name="production", metadata={"drop": None, "env": "p"})
    assert u.display_name == "production" and u.metadata == {"team": "a", "env": "p"}
    assert u.updated_at >= v.updated_at

    others = [client.beta.vaults.create(display_name=f"v{i}") for i in range(3)]
    pages = all_pages(client.beta.vaults.with_raw_response.list, limit=2)
    assert [p["id"] for p in pages] == [o.id for o in reversed(others)] + [v.id]

    a = client.beta.vaults.archive(others[0].id)
    assert a.archived_at is not None
    assert client.beta.vaults.archive(others[0].id).archived_at == a.archived_at
    assert others[0].id not in [x.id for x in client.beta.vaults.list()]
    assert others[0].id in [x.id for x in client.beta.vaults.list(include_archived=True)]
    with pytest.raises(anthropic.ConflictError):
        client.beta.vaults.update(others[0].id, display_name="again")

    d = client.beta.vaults.with_raw_response.delete(others[1].id).json()
    validate_model(BetaManagedAgentsDeletedVault, d)
    assert d == {"id": others[1].id, "type": "vault_deleted"}
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.vaults.retrieve(others[1].id)
    assert others[1].id in ei.value.message


def test_vault_bad_input_names_the_field(client):
    for kw, field in [({"display_name": ""}, "display_name"),
                      ({"display_name": "x" * 256}, "display_name"),
                      ({"display_name": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
                      ({"display_name": "x", "extra_body": {"nope": 1}}, "nope")]:
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.vaults.create(**kw)
        assert ei.value.body["error"]["type"] == "invalid_request_error"
        assert field in ei.value.message
    assert list(client.beta.vaults.list()) == []
    with pytest.raises(anthropic.BadRequestError):
        client.beta.vaults.list(page="env_123")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.credentials.list("vlt_missing")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.archive("vlt_missing")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.delete("vlt_missing")


def test_vaults_belong_to_their_workspace(server):
    a = server.client()
    v = a.beta.vaults.create(display_name="mine")
    other = server.client(server.create_key("other"))
    with pytest.raises(anthropic.NotFoundError):
        other.beta.vaults.retrieve(v.id)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.vaults.credentials.create(v.id, auth={"type": "static_bearer", "token": "t",
                                                         "mcp_server_url": "https://mcp.example.com/"})
    assert list(other.beta.vaults.list()) == []


# ----------------------------------------------------------------------------- credentials


def oauth_auth(lb_url: str, access: str, refresh: str, client_secret: str, expires_in: int = 3600):
    return {
        "type": "mcp_oauth",
        "mcp_server_url": f"{lb_url}/mcp",
        "access_token": access,
        "expires_at": (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).isoformat(),
        "refresh": {
            "client_id": "agentd-test",
            "refresh_token": refresh,
            "token_endpoint": f"{lb_url}/token",
            "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": client_secret},
            "scope": "read",
        },
    }


def test_credentials_of_every_kind_round_trip_without_their_secrets(client):
    v = client.beta.vaults.create(display_name="creds")
    planted = {t: canary(t) for t in ["bearer", "access", "refresh", "client", "envval", "new"]}
    bearer = client.beta.vaults.credentials.with_raw_response.create(
        v.id, display_name="gh", metadata={"k": "v"},
        auth={"type": "static_bearer", "token": planted["bearer"], "mcp_server_url": "https://mcp.example.com/sse"})
    oauth = client.beta.vaults.credentials.with_raw_response.create(
        v.id, auth=oauth_auth("https://auth.example.com", planted["access"], planted["refresh"], planted["client"]))
    env = client.beta.vaults.credentials.with_raw_response.create(
        v.id, auth={"type": "environment_variable", "secret_name": "API_TOKEN", "secret_value": planted["envval"],
                    "networking": {"type": "limited", "allowed_hosts": ["api.example.com", "*.example.org"]}})
    texts = [bearer.http_response.text, oauth.http_response.text, env.http_response.text]
    b, o, e = (validate_model(BetaManagedAgentsCredential, r.json()) for r in (bearer, oauth, env))
    assert b.id.startswith("vcrd_") and b.type == "vault_credential" and b.vault_id == v.id
    assert b.auth.type == "static_bearer" and b.auth.mcp_server_url == "https://mcp.example.com/sse"
    assert b.display_name == "gh" and b.metadata == {"k": "v"}
    assert o.auth.type == "mcp_oauth" and o.auth.refresh.client_id == "agentd-test"
    assert o.auth.refresh.token_endpoint_auth.type == "client_secret_basic"
    assert o.auth.refresh.scope == "read" and o.auth.expires_at is not None
    assert e.auth.type == "environment_variable" and e.auth.secret_name == "API_TOKEN"
    assert e.auth.networking.allowed_hosts == ["api.example.com", "*.example.org"]
    assert e.auth.injection_location.header is True

    for c in (b, o, e):
        r = client.beta.vaults.credentials.with_raw_response.retrieve(c.id, vault_id=v.id)
        validate_model(BetaManagedAgentsCredential, r.json())
        texts.append(r.http_response.text)
    listed = client.beta.vaults.credentials.with_raw_response.list(v.id, limit=2)
    texts.append(listed.http_response.text)
    assert len(all_pages(client.beta.vaults.credentials.with_raw_response.list, v.id, limit=1)) == 3

    upd = client.beta.vaults.credentials.with_raw_response.update(
        b.id, vault_id=v.id, auth={"type": "static_bearer", "token": planted["new"]}, display_name="gh2",
        metadata={"k": None, "n": "1"})
    texts.append(upd.http_response.text)
    u = validate_model(BetaManagedAgentsCredential, upd.json())
    assert u.display_name == "gh2" and u.metadata == {"n": "1"} and u.updated_at > b.updated_at
    upd = client.beta.vaults.credentials.with_raw_response.update(
        e.id, vault_id=v.id, auth={"type": "environment_variable", "injection_location": {"body": True},
                                   "networking": {"type": "unrestricted"}})
    texts.append(upd.http_response.text)
    assert upd.json()["auth"]["injection_location"] == {"body": True, "header": True}
    assert upd.json()["auth"]["networking"] == {"type": "unrestricted"}

    arch = client.beta.vaults.credentials.with_raw_response.archive(o.id, vault_id=v.id)
    texts.append(arch.http_response.text)
    assert arch.json()["archived_at"] is not None
    assert [c.id for c in client.beta.vaults.credentials.list(v.id)] == [e.id, b.id]
    assert len(list(client.beta.vaults.credentials.list(v.id, include_archived=True))) == 3
    with pytest.raises(anthropic.ConflictError):
        client.beta.vaults.credentials.update(o.id, vault_id=v.id, display_name="x")

    d = client.beta.vaults.credentials.with_raw_response.delete(e.id, vault_id=v.id).json()
    validate_model(BetaManagedAgentsDeletedCredential, d)
    assert d == {"id": e.id, "type": "vault_credential_deleted"}
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.credentials.retrieve(e.id, vault_id=v.id)

    # Archiving the vault archives what is left in it.
    client.beta.vaults.archive(v.id)
    assert client.beta.vaults.credentials.retrieve(b.id, vault_id=v.id).archived_at is not None
    with pytest.raises(anthropic.ConflictError):
        client.beta.vaults.credentials.create(v.id, auth={"type": "static_bearer", "token": "t",
                                                          "mcp_server_url": "https://other.example.com/"})
    for t in texts:
        for secret in planted.values():
            assert secret not in t


BAD_CREDENTIALS = [
    ({"type": "static_bearer", "mcp_server_url": "https://m.example.com/"}, "auth.token"),
    ({"type": "static_bearer", "token": "", "mcp_server_url": "https://m.example.com/"}, "auth.token"),
    ({"type": "static_bearer", "token": "t", "mcp_server_url": "not a url"}, "auth.mcp_server_url"),
    ({"type": "static_bearer", "token": "t", "mcp_server_url": "ftp://m.example.com/"}, "auth.mcp_server_url"),
    ({"type": "carrier_pigeon", "token": "t"}, "auth"),
    ({"type": "mcp_oauth", "access_token": "a", "mcp_server_url": "https://m.example.com/",
      "expires_at": "2001-01-01T00:00:00Z"}, "auth.expires_at"),
    ({"type": "mcp_oauth", "access_token": "a", "mcp_server_url": "https://m.example.com/",
      "refresh": {"client_id": "c", "refresh_token": "r", "token_endpoint": "nowhere",
                  "token_endpoint_auth": {"type": "none"}}}, "auth.refresh.token_endpoint"),
    ({"type": "mcp_oauth", "access_token": "a", "mcp_server_url": "https://m.example.com/",
      "refresh": {"client_id": "c", "refresh_token": "r", "token_endpoint": "https://t.example.com/",
                  "token_endpoint_auth": {"type": "client_secret_post"}}}, "auth.refresh.token_endpoint_auth"),
    ({"type": "environment_variable", "secret_name": "1BAD", "secret_value": "v",
      "networking": {"type": "unrestricted"}}, "auth.secret_name"),
    ({"type": "environment_variable", "secret_name": "OK", "secret_value": "v",
      "networking": {"type": "limited", "allowed_hosts": ["https://x.example.com/"]}},
     "auth.networking.allowed_hosts[0]"),
    ({"type": "environment_variable", "secret_name": "OK", "secret_value": "v",
      "networking": {"type": "unrestricted"}, "injection_location": {"body": False, "header": False}},
     "auth.injection_location"),
]


def test_bad_credentials_get_a_clear_error_and_nothing_stored_is_lost(client):
    v = client.beta.vaults.create(display_name="v")
    kept_secret = canary("kept")
    kept = client.beta.vaults.credentials.create(
        v.id, auth={"type": "static_bearer", "token": kept_secret, "mcp_server_url": "https://m.example.com/"})
    for auth, field in BAD_CREDENTIALS:
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.vaults.credentials.create(v.id, auth=auth)
        assert ei.value.body["error"]["type"] == "invalid_request_error"
        assert field in ei.value.message, (field, ei.value.message)
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.vaults.credentials.create("vlt_missing", auth=BAD_CREDENTIALS[0][0] | {"token": "t"})
    assert "vlt_missing" in ei.value.message
    # One live credential per MCP server in a vault.
    with pytest.raises(anthropic.ConflictError) as ei:
        client.beta.vaults.credentials.create(
            v.id, auth={"type": "static_bearer", "token": "x", "mcp_server_url": "https://m.example.com/"})
    assert "https://m.example.com/" in ei.value.message
    # An update that changes the type, or the immutable server URL, is refused as a whole.
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.vaults.credentials.update(kept.id, vault_id=v.id, display_name="renamed",
                                              auth={"type": "mcp_oauth", "access_token": "x"})
    assert "auth.type" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.vaults.credentials.update(
            kept.id, vault_id=v.id,
            auth={"type": "static_bearer", "mcp_server_url": "https://evil.example.com/"})
    assert "mcp_server_url" in ei.value.message
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.credentials.retrieve("vcrd_missing", vault_id=v.id)
    after = client.beta.vaults.credentials.list(v.id)
    assert [c.id for c in after] == [kept.id]
    assert client.beta.vaults.credentials.retrieve(kept.id, vault_id=v.id) == kept


# ----------------------------------------------------------------------------- sessions


def test_sessions_take_vault_ids_and_refuse_unknown_or_archived_ones(client):
    agent, env = make_agent(client), make_env(client)
    v1 = client.beta.vaults.create(display_name="one")
    v2 = client.beta.vaults.create(display_name="two")
    s = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[v1.id, v2.id])
    assert s.vault_ids == [v1.id, v2.id]
    assert client.beta.sessions.retrieve(s.id).vault_ids == [v1.id, v2.id]
    plain = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert plain.vault_ids == []

    before = {x.id for x in client.beta.sessions.list()}
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[v1.id, "vlt_nope"])
    assert "vault_ids[1]" in ei.value.message and "vlt_nope" in ei.value.message
    client.beta.vaults.archive(v2.id)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[v2.id])
    assert "vault_ids[0]" in ei.value.message and "archived" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.update(s.id, vault_ids=[v1.id])
    assert "vault_ids" in ei.value.message
    assert {x.id for x in client.beta.sessions.list()} == before
    assert client.beta.sessions.retrieve(s.id).vault_ids == [v1.id, v2.id]


def test_a_vault_in_another_workspace_is_unknown_to_a_session(server):
    a = server.client()
    v = a.beta.vaults.create(display_name="theirs")
    other = server.client(server.create_key("other"))
    agent, env = make_agent(other), make_env(other)
    with pytest.raises(anthropic.NotFoundError):
        other.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[v.id])


# ----------------------------------------------------------------------------- OAuth


def test_validate_refreshes_on_a_401_and_stores_the_new_tokens(keyed, loopback):
    client = keyed.client()
    v = client.beta.vaults.create(display_name="oauth")
    old_access, refresh, csecret = canary("old"), canary("refresh"), canary("client")
    new_access, new_refresh = canary("newaccess"), canary("newrefresh")
    loopback.accept = canary("server-only")  # the stored access token is already refused
    loopback.refresh_token, loopback.next_access, loopback.next_refresh = refresh, new_access, new_refresh
    c = client.beta.vaults.credentials.create(v.id, auth=oauth_auth(loopback.url, old_access, refresh, csecret))

    raw = client.beta.vaults.credentials.with_raw_response.mcp_oauth_validate(c.id, vault_id=v.id)
    r = validate_model(BetaManagedAgentsCredentialValidation, raw.json())
    assert r.status == "valid" and r.has_refresh_token and r.refresh.status == "succeeded"
    assert loopback.mcp_auth == [f"Bearer {old_access}", f"Bearer {new_access}"]
    form = loopback.token_forms[0]
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == refresh
    assert form["scope"] == "read"
    assert form["_authorization"] == "Basic " + base64.b64encode(f"agentd-test:{csecret}".encode()).decode()
    after = client.beta.vaults.credentials.retrieve(c.id, vault_id=v.id)
    assert after.auth.expires_at > c.auth.expires_at

    # The new tokens were stored (and survive a restart): the next probe needs no refresh, and
    # the rotated refresh token is the one sent next time.
    keyed.stop()
    keyed.restart()
    client = keyed.client()
    r = client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id)
    assert r.status == "valid" and r.refresh is None
    assert loopback.mcp_auth[-1] == f"Bearer {new_access}"
    loopback.accept = canary("server-only-2")
    loopback.token_status = 400
    r = client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id)
    assert r.status == "invalid" and r.refresh.status == "failed"
    assert r.refresh.http_response.status_code == 400
    assert loopback.token_forms[-1]["refresh_token"] == new_refresh
    text = raw.http_response.text + keyed.log()
    for s in (old_access, refresh, csecret, new_access, new_refresh):
        assert s not in text


def test_validate_without_a_refresh_token_says_so(keyed, loopback):
    client = keyed.client()
    v = client.beta.vaults.create(display_name="oauth")
    loopback.accept = "something-else"
    c = client.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": f"{loopback.url}/mcp", "access_token": "stale"})
    r = client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id)
    assert r.status == "invalid" and not r.has_refresh_token
    assert r.refresh.status == "no_refresh_token"
    assert r.mcp_probe.method == "initialize" and r.mcp_probe.http_response.status_code == 401
    b = client.beta.vaults.credentials.create(v.id, auth={
        "type": "static_bearer", "mcp_server_url": "https://m.example.com/", "token": "t"})
    with pytest.raises(anthropic.BadRequestError):
        client.beta.vaults.credentials.mcp_oauth_validate(b.id, vault_id=v.id)


def test_agentd_reaches_for_a_credential_only_where_sandboxes_may(server, loopback):
    """Without the operator opening loopback, validate refuses a loopback MCP server (or one on
    private space) with a 400 naming why, and sends it nothing."""
    client = server.client()
    v = client.beta.vaults.create(display_name="ssrf")
    loopback.accept = "t"
    for url in [f"{loopback.url}/mcp", "http://localhost:9/mcp", "http://169.254.169.254/latest/meta-data"]:
        c = client.beta.vaults.credentials.create(v.id, auth={
            "type": "mcp_oauth", "mcp_server_url": url, "access_token": "t"})
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id)
        assert ei.value.message.startswith("auth.mcp_server_url:") or "auth.mcp_server_url" in ei.value.message
        assert "127.0.0.1" in ei.value.message or "169.254.169.254" in ei.value.message
    assert loopback.mcp_auth == []


# ----------------------------------------------------------------------------- the key


def test_a_wrong_key_stops_agentd_and_the_right_one_finds_everything(keyed, loopback):
    client = keyed.client()
    v = client.beta.vaults.create(display_name="keep")
    token = canary("kept")
    loopback.accept = token
    c = client.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": f"{loopback.url}/mcp", "access_token": token})
    keyed.stop()

    right = keyed.env["AGENTD_VAULT_KEY"]
    keyed.env["AGENTD_VAULT_KEY"] = new_key()
    with pytest.raises(RuntimeError) as ei:
        keyed.restart()
    assert keyed.proc.returncode != 0
    assert "does not open the secrets" in str(ei.value) and "AGENTD_VAULT_KEY" in str(ei.value)
    keyed.env["AGENTD_VAULT_KEY"] = "not base64!"
    with pytest.raises(RuntimeError) as ei:
        keyed.restart()
    assert keyed.proc.returncode != 0 and "is not a vault key" in str(ei.value)

    keyed.env["AGENTD_VAULT_KEY"] = right
    keyed.restart()
    client = keyed.client()
    assert client.beta.vaults.credentials.retrieve(c.id, vault_id=v.id) == c
    assert client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id).status == "valid"
    assert token not in keyed.log()


def test_the_key_file_is_made_once_with_mode_0600(server):
    path = server.data_dir / "vault.key"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32
    first = path.read_text()
    server.stop()
    server.restart()
    assert path.read_text() == first


def rotate(server, extra_env=None):
    env = dict(server.env) | (extra_env or {})
    return subprocess.run([str(server.binary), "vault", "rotate-key", "--data-dir", str(server.data_dir)],
                          env=env, capture_output=True, text=True, timeout=60)


def test_rotate_key_with_a_key_file_reseals_and_restarts(server_factory, loopback):
    server = server_factory(env=LOOPBACK)
    client = server.client()
    v = client.beta.vaults.create(display_name="r")
    token = canary("rotated")
    loopback.accept = token
    c = client.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": f"{loopback.url}/mcp", "access_token": token})
    client.beta.vaults.credentials.create(v.id, auth={
        "type": "static_bearer", "mcp_server_url": "https://m.example.com/", "token": canary("other")})
    old = (server.data_dir / "vault.key").read_text()
    server.stop()
    out = rotate(server)
    assert out.returncode == 0, out.stderr
    assert "resealed 2 credential(s)" in out.stderr
    assert token not in out.stdout + out.stderr
    new = (server.data_dir / "vault.key").read_text()
    assert new != old and stat.S_IMODE((server.data_dir / "vault.key").stat().st_mode) == 0o600
    server.restart()
    client = server.client()
    assert client.beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id).status == "valid"

    # The old key no longer opens anything.
    server.stop()
    (server.data_dir / "vault.key").write_text(old)
    with pytest.raises(RuntimeError) as ei:
        server.restart()
    assert "does not open the secrets" in str(ei.value)


def test_a_key_rotated_under_a_serving_agentd_stops_its_writes_until_it_restarts(server_factory):
    server = server_factory()
    client = server.client(max_retries=0)
    v = client.beta.vaults.create(display_name="r")
    auth = lambda host: {"type": "static_bearer", "mcp_server_url": f"https://{host}/", "token": canary(host)}
    client.beta.vaults.credentials.create(v.id, auth=auth("a.example.com"))
    out = rotate(server)
    assert out.returncode == 0, out.stderr
    # Sealed with the old key, this secret would open with neither: refused, and nothing stored.
    with pytest.raises(anthropic.InternalServerError) as e:
        client.beta.vaults.credentials.create(v.id, auth=auth("b.example.com"))
    assert "restart" in e.value.body["error"]["message"]
    assert len(client.beta.vaults.credentials.list(v.id).data) == 1
    server.stop()
    server.restart()
    client = server.client()
    client.beta.vaults.credentials.create(v.id, auth=auth("b.example.com"))
    assert len(client.beta.vaults.credentials.list(v.id).data) == 2


def test_rotate_key_with_the_environment_variable(keyed, loopback):
    client = keyed.client()
    v = client.beta.vaults.create(display_name="r")
    token = canary("rotated")
    loopback.accept = token
    c = client.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": f"{loopback.url}/mcp", "access_token": token})
    keyed.stop()
    new = new_key()
    out = rotate(keyed, {"AGENTD_VAULT_NEW_KEY": new})
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    with pytest.raises(RuntimeError):
        keyed.restart()
    keyed.env["AGENTD_VAULT_KEY"] = new
    keyed.restart()
    assert keyed.client().beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id).status == "valid"

    # Without a new key given, one is made and printed once.
    keyed.stop()
    out = rotate(keyed)
    assert out.returncode == 0, out.stderr
    printed = out.stdout.strip()
    assert len(base64.b64decode(printed)) == 32 and printed != new
    keyed.env["AGENTD_VAULT_KEY"] = printed
    keyed.restart()
    assert keyed.client().beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id).status == "valid"


# ----------------------------------------------------------------------------- canaries


def test_canary_secrets_appear_nowhere(server_factory, fake_upstream, loopback):
    """Plant a unique secret in every secret field, use the vault in a session, exercise every
    endpoint (errors too, and an OAuth refresh), then search everything agentd answered, logged
    (at debug level) or sent upstream, and its database files."""
    keyed = server_factory(upstream=fake_upstream, env={"AGENTD_VAULT_KEY": new_key()} | LOOPBACK,
                           log="debug")
    client = keyed.client()
    planted = {t: canary(t) for t in ["bearer", "access", "refresh", "client", "envval", "upd",
                                      "newaccess", "newrefresh"]}
    seen: list[str] = []

    def keep(raw):
        seen.append(raw.http_response.text)
        return raw

    v = keep(client.beta.vaults.with_raw_response.create(display_name="canary")).json()
    vid = v["id"]
    # The stored access token is refused: validate refreshes it with the planted refresh token
    # and client secret, and stores the new planted pair.
    loopback.accept = canary("server-side")
    loopback.refresh_token = planted["refresh"]
    loopback.next_access, loopback.next_refresh = planted["newaccess"], planted["newrefresh"]
    made = [
        keep(client.beta.vaults.credentials.with_raw_response.create(vid, auth={
            "type": "static_bearer", "mcp_server_url": "https://mcp.example.com/", "token": planted["bearer"]})).json(),
        keep(client.beta.vaults.credentials.with_raw_response.create(
            vid, auth=oauth_auth(loopback.url, planted["access"], planted["refresh"], planted["client"]))).json(),
        keep(client.beta.vaults.credentials.with_raw_response.create(vid, auth={
            "type": "environment_variable", "secret_name": "TOKEN", "secret_value": planted["envval"],
            "networking": {"type": "unrestricted"}})).json(),
    ]
    for c in made:
        keep(client.beta.vaults.credentials.with_raw_response.retrieve(c["id"], vault_id=vid))
    keep(client.beta.vaults.credentials.with_raw_response.list(vid, include_archived=True))
    keep(client.beta.vaults.credentials.with_raw_response.update(
        made[0]["id"], vault_id=vid, auth={"type": "static_bearer", "token": planted["upd"]}))
    checked = keep(client.beta.vaults.credentials.with_raw_response.mcp_oauth_validate(made[1]["id"], vault_id=vid))
    assert checked.json()["status"] == "valid" and checked.json()["refresh"]["status"] == "succeeded"
    assert loopback.mcp_auth[-1] == f"Bearer {planted['newaccess']}"
    # Bad requests carrying secrets: the errors must not quote them.
    for bad in [
        {"type": "static_bearer", "mcp_server_url": "nope", "token": planted["bearer"]},
        {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/", "token": planted["bearer"]},
        {"type": "mcp_oauth", "mcp_server_url": "https://x.example.com/", "access_token": planted["access"],
         "expires_at": planted["access"]},
        {"type": "static_bearer", "mcp_server_url": "https://y.example.com/", "token": [planted["bearer"]]},
        {"type": "static_bearer", "mcp_server_url": "https://y.example.com/", "token": {planted["bearer"]: 1}},
        {"type": "static_bearer", "mcp_server_url": "https://y.example.com/", "token": "t", "access_token": planted["bearer"]},
    ]:
        try:
            client.beta.vaults.credentials.create(vid, auth=bad)
            raise AssertionError(f"accepted {bad}")
        except anthropic.APIStatusError as e:
            assert e.status_code in (400, 409)
            seen.append(e.response.text)

    agent, env = make_agent(client, model="claude-sonnet-4-6"), make_env(client)
    s = keep(client.beta.sessions.with_raw_response.create(agent=agent.id, environment_id=env.id,
                                                           vault_ids=[vid])).json()
    send_text(client, s["id"], "hello")
    evs = wait_idle(client, s["id"])
    seen.append(json.dumps(evs))
    keep(client.beta.sessions.with_raw_response.retrieve(s["id"]))
    keep(client.beta.vaults.with_raw_response.archive(vid))
    keep(client.beta.vaults.credentials.with_raw_response.list(vid, include_archived=True))

    assert fake_upstream.requests, "the model was asked"
    seen.extend(r.raw.decode("utf-8", "replace") for r in fake_upstream.requests)
    seen.extend(json.dumps(r.headers) for r in fake_upstream.requests)
    log = keyed.log()
    assert " DEBUG " in log, "the log searched is a debug-level one"
    seen.append(log)
    # At rest: the SQLite file and its WAL, or the PostgreSQL rows (sealed bytes with their
    # printable runs as they are), hold only sealed secrets.
    files = list(keyed.data_dir.glob("agentd.db*"))
    for f in files:
        seen.append(f.read_bytes().decode("latin-1"))
    db = keyed.env.get("AGENTD_DATABASE_URL", "")
    if db.startswith("postgres"):
        rows = subprocess.run(["psql", db, "-Atc",
                               "SELECT body::text || encode(sealed, 'escape') FROM vault_credentials "
                               "UNION ALL SELECT body::text FROM events"],
                              check=True, capture_output=True, text=True).stdout
        assert made[0]["id"] in rows
        seen.append(rows)
    else:
        assert files, "the SQLite files were searched"
    blob = "\n".join(seen)
    hits = {name: blob.count(secret) for name, secret in planted.items()}
    assert hits == {name: 0 for name in planted}, hits


# ----------------------------------------------------------------------------- many processes

ADMIN = os.environ.get("AGENTD_TEST_POSTGRES_URL")


@pytest.mark.skipif(not ADMIN, reason="needs AGENTD_TEST_POSTGRES_URL")
def test_processes_on_one_database_need_one_key_once_a_secret_is_stored(server_factory, loopback):
    """Two processes on one PostgreSQL database, each with a key file of its own: both start
    while no secret is stored; the first secret binds the database to its key, the other
    process refuses to store one under another key and will not start again with it; given the
    first's key file it starts and uses the secret."""
    name = f"vaults_{secrets.token_hex(6)}"
    subprocess.run(["psql", ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    env = {"AGENTD_DATABASE_URL": ADMIN.rsplit("/", 1)[0] + "/" + name} | LOOPBACK
    first = server_factory(env=env)
    second = server_factory(env=env, key=first.key)
    assert (first.data_dir / "vault.key").read_text() != (second.data_dir / "vault.key").read_text()

    a, b = first.client(), second.client()
    v = a.beta.vaults.create(display_name="shared")
    token = canary("shared")
    loopback.accept = token
    c = a.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": f"{loopback.url}/mcp", "access_token": token})
    with pytest.raises(anthropic.InternalServerError) as ei:
        b.beta.vaults.credentials.create(v.id, auth={
            "type": "static_bearer", "mcp_server_url": "https://m.example.com/", "token": "t"})
    assert "same key" in ei.value.message
    assert [x.id for x in b.beta.vaults.credentials.list(v.id)] == [c.id]

    second.stop()
    with pytest.raises(RuntimeError) as ei:
        second.restart()
    assert "does not open the secrets" in str(ei.value)
    (second.data_dir / "vault.key").write_text((first.data_dir / "vault.key").read_text())
    second.restart()
    assert second.client().beta.vaults.credentials.mcp_oauth_validate(c.id, vault_id=v.id).status == "valid"
