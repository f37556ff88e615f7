"""Repository resources through the official SDK, against a real git smart-HTTP server
(`git http-backend` behind basic auth, on a loopback address the operator opened).

The repository is cloned into the workspace when the session's sandbox is first made, on the
branch or commit asked for; `git fetch` and `git push` from the sandbox work. The token never
reaches the sandbox: its git talks to the egress proxy without one, and the proxy adds it to
that repository's requests only. Canary tokens are then searched for everywhere they must not
be: the sandbox's files, environment and command lines, every event, every request the model
received, agentd's own log, every API response."""

import json
import secrets

import anthropic
import pytest

from conftest import list_raw_events, run_bash_turn
from git_server import GitServer, certificates, git, make_repo

CLAUDE = "claude-sonnet-4-6"
TOOLSET = [{"type": "agent_toolset_20260401",
            "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}]
# The git server listens on 127.0.0.2: the sandbox's NO_PROXY names 127.0.0.1 only, so its
# requests go through the proxy, which reaches loopback because the operator opened it.
LOOPBACK = {"AGENTD_EGRESS_ALLOW_PRIVATE": "127.0.0.0/8"}


@pytest.fixture(params=["http", "https"])
def repo(request, tmp_path):
    """A private repository on a git server over plain HTTP or HTTPS (whose CA agentd is told
    of by SSL_CERT_FILE, as an operator would for a private git host)."""
    token = f"ghp_canary{secrets.token_hex(12)}"
    root = tmp_path / "git"
    shas = make_repo(root / "acme", "widgets")
    env = dict(LOOPBACK)
    tls = None
    if request.param == "https":
        certs = tmp_path / "certs"
        certs.mkdir()
        ca, cert, key = certificates(certs)
        tls = (cert, key)
        env["SSL_CERT_FILE"] = str(ca)
    srv = GitServer(root, token, tls=tls)
    yield {"server": srv, "token": token, "url": srv.url("acme/widgets.git"), "env": env, **shas}
    srv.close()


@pytest.fixture
def gserver(server_factory, fake_upstream, repo):
    return server_factory(upstream=fake_upstream, env=repo["env"])


def session_with(client, resources, networking=None):
    env = client.beta.environments.create(
        name="repo", config={"type": "cloud", "networking": networking or {"type": "unrestricted"}})
    agent = client.beta.agents.create(name="coder", model=CLAUDE, tools=TOOLSET)
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources)


def run_bash(client, fake_upstream, sid: str, command: str, turn: int) -> tuple[str, bool]:
    return run_bash_turn(client, fake_upstream, sid, command, turn)


def split(secret: str) -> str:
    """Bash that rebuilds `secret` from two halves, so the command (which the log and the model
    see) never holds it whole."""
    h = len(secret) // 2
    return f"a='{secret[:h]}'; b='{secret[h:]}'; s=\"$a$b\""


def test_a_private_repository_is_cloned_fetched_and_pushed_without_the_token_inside(
        gserver, fake_upstream, repo):
    client = gserver.client()
    token = repo["token"]
    s = session_with(client, [{"type": "github_repository", "url": repo["url"],
                               "authorization_token": token,
                               "checkout": {"type": "branch", "name": "feature"}}])
    r = s.resources[0]
    assert (r.type, r.url, r.mount_path) == ("github_repository", repo["url"], "/workspace/widgets")
    assert r.checkout.type == "branch" and r.checkout.name == "feature"
    assert repo["server"].requests == [], "nothing is cloned before a tool needs the sandbox"

    out, err = run_bash(client, fake_upstream, s.id,
                        "cd /workspace/widgets && git rev-parse HEAD && cat README feature.txt "
                        "&& git remote get-url origin", 1)
    assert not err, out
    assert repo["feature"] in out and "hello from the repository" in out and "on the feature branch" in out
    assert repo["url"] in out
    # Every request that reached the server carried the token: the proxy added it.
    assert repo["server"].requests and all(q["authorization"] for q in repo["server"].requests)

    # The agent commits and pushes; another branch appears on the server, and fetch works.
    out, err = run_bash(client, fake_upstream, s.id,
                        "cd /workspace/widgets && git -c user.name=a -c user.email=a@x commit -q --allow-empty -m agent "
                        "&& git push -q origin HEAD:refs/heads/from-agent 2>&1 && git fetch -q origin 2>&1 "
                        "&& git rev-parse HEAD && git branch -r", 2)
    assert not err, out
    pushed = git("rev-parse", "refs/heads/from-agent", cwd=repo["bare"])
    assert pushed in out and "origin/main" in out, out

    # Search the sandbox for the token: files, environments, command lines, git's config.
    out, err = run_bash(client, fake_upstream, s.id,
                        # The pattern comes from a pipe: grep's own command line must not hold it.
                        split(token) + "; hits=$(grep -rlsF -f <(printf '%s\\n' \"$s\") /workspace /tmp /etc /mnt "
                        "/proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | wc -l); "
                        "echo hits=$hits; env | grep -ic proxy; cat /workspace/widgets/.git/config; "
                        "git -C /workspace/widgets config --list --show-origin | grep -ic credential", 3)
    assert "hits=0" in out, out
    assert token not in out

    # A malicious agent asks the proxy straight: it gets the repository's answer, not the token.
    out, err = run_bash(client, fake_upstream, s.id,
                        "python3 -c \"import urllib.request as u; r = u.urlopen("
                        f"'{repo['url']}/info/refs?service=git-upload-pack'); print(r.status, dict(r.headers)); "
                        "print(r.read()[:300])\"", 4)
    assert "200" in out and "git-upload-pack" in out, out
    assert token not in out and "Authorization" not in out, out

    # Nowhere outside either: events, the model's requests, API responses, agentd's log.
    assert token not in json.dumps(list_raw_events(client, s.id))
    for q in fake_upstream.requests:
        assert token.encode() not in q.raw, "the model saw the token"
    for raw in [client.beta.sessions.with_raw_response.retrieve(s.id).text(),
                client.beta.sessions.resources.with_raw_response.list(s.id).text(),
                client.beta.sessions.resources.with_raw_response.retrieve(r.id, session_id=s.id).text()]:
        assert token not in raw and "authorization_token" not in raw
    assert token not in gserver.log()


def test_a_rotated_token_is_used_from_the_next_call(gserver, fake_upstream, repo):
    client = gserver.client()
    s = session_with(client, [{"type": "github_repository", "url": repo["url"],
                               "authorization_token": repo["token"], "mount_path": "/workspace/src/w",
                               "checkout": {"type": "commit", "sha": repo["first"]}}])
    out, err = run_bash(client, fake_upstream, s.id, "cd /workspace/src/w && git rev-parse HEAD; ls", 1)
    assert not err and repo["first"] in out and "feature.txt" not in out, out

    new = f"ghp_rotated{secrets.token_hex(12)}"
    repo["server"].token = new
    r = s.resources[0]
    u = client.beta.sessions.resources.update(r.id, session_id=s.id, authorization_token=new)
    assert u.id == r.id and u.updated_at > r.updated_at
    out, err = run_bash(client, fake_upstream, s.id, "cd /workspace/src/w && git fetch origin 2>&1; echo rc=$?", 2)
    assert "rc=0" in out, out
    assert new not in json.dumps(list_raw_events(client, s.id)) and new not in gserver.log()


def test_a_wrong_token_or_a_missing_repository_is_a_clear_tool_error(gserver, fake_upstream, repo):
    client = gserver.client()
    wrong = f"ghp_wrong{secrets.token_hex(8)}"
    s = session_with(client, [{"type": "github_repository", "url": repo["url"], "authorization_token": wrong}])
    out, err = run_bash(client, fake_upstream, s.id, "echo hi", 1)
    assert err and "setup failed" in out and repo["url"] in out, out
    assert wrong not in out

    s2 = session_with(client, [{"type": "github_repository", "url": repo["server"].url("acme/nothing.git"),
                                "authorization_token": repo["token"]}])
    out, err = run_bash(client, fake_upstream, s2.id, "echo hi", 1)
    assert err and "nothing.git" in out, out

    # The session goes on: the resource deleted, the next call gets a sandbox.
    client.beta.sessions.resources.delete(s2.resources[0].id, session_id=s2.id)
    out, err = run_bash(client, fake_upstream, s2.id, "echo fine", 2)
    assert not err and "fine" in out, out


def test_bad_repository_resources_are_refused_naming_the_field(server_factory, fake_upstream):
    client = server_factory(upstream=fake_upstream).client()
    env = client.beta.environments.create(name="repo")
    agent = client.beta.agents.create(name="a", model=CLAUDE, tools=TOOLSET)
    before = len(client.beta.sessions.list().data)
    for bad, field in [
        ({"url": "git@github.com:acme/w.git"}, "resources[0].url:"),
        ({"url": "https://user:pw@github.com/acme/w"}, "resources[0].url:"),
        ({"url": "https://github.com/"}, "resources[0].url:"),
        ({"url": "https://github.com/a/w", "mount_path": "/data/w"}, "resources[0].mount_path:"),
        ({"url": "https://github.com/a/w", "mount_path": "/workspace/../etc"}, "resources[0].mount_path:"),
        ({"url": "https://github.com/a/w", "checkout": {"type": "branch", "name": "--upload-pack=x"}},
         "resources[0].checkout:"),
        ({"url": "https://github.com/a/w", "checkout": {"type": "commit", "sha": "abc"}}, "resources[0].checkout:"),
        ({"url": "https://github.com/a/w", "authorization_token": "two words"}, "resources[0].authorization_token:"),
        ({"url": "https://github.com/a/w", "branch": "main"}, "resources[0]"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.sessions.create(agent=agent.id, environment_id=env.id,
                                        resources=[{"type": "github_repository", **bad}])
        msg = e.value.body["error"]["message"]
        assert msg.startswith(field), (bad, msg)
        assert "two words" not in msg
    assert len(client.beta.sessions.list().data) == before, "nothing was created"

    s = client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=[
        {"type": "github_repository", "url": "https://github.com/acme/w"}])
    assert s.resources[0].mount_path == "/workspace/w"
    # A self_hosted environment's worker runs the tools where agentd cannot add the token.
    worker_env = client.beta.environments.create(name="sh", config={"type": "self_hosted"})
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.create(agent=agent.id, environment_id=worker_env.id, resources=[
            {"type": "github_repository", "url": "https://github.com/acme/w", "authorization_token": "t"}])
    assert e.value.body["error"]["message"].startswith("resources[0].type:"), e.value.body

    # As the SDK defines `resources.add`: files only; a repository is named at create.
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.resources.add(s.id, type="file", file_id="x",
                                           extra_body={"type": "github_repository", "url": "https://github.com/o/w"})
    assert e.value.body["error"]["message"].startswith("type:"), e.value.body
    for token in ["", "two words"]:
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.sessions.resources.update(s.resources[0].id, session_id=s.id, authorization_token=token)
        assert e.value.body["error"]["message"].startswith("authorization_token:"), e.value.body
    assert client.beta.sessions.resources.list(s.id).data == s.resources, "nothing changed"
