"""/v1/environments through the SDK: create, retrieve, update, list, archive, delete, and
validation of the cloud config (limited networking, packages)."""

import anthropic
import pytest
from anthropic.types.beta import BetaEnvironment

from conftest import make_agent, make_env, validate_model

LIMITED = {
    "type": "cloud",
    "networking": {
        "type": "limited",
        "allowed_hosts": ["api.example.com", "*.pypi.org"],
        "allow_mcp_servers": True,
        "allow_package_managers": False,
    },
    "packages": {"pip": ["requests==2.32.3"], "npm": ["left-pad@1.3.0"]},
}


def test_create_retrieve_defaults(client):
    e = client.beta.environments.create(name="plain")
    assert e.id.startswith("env_")
    assert e.type == "environment"
    assert e.name == "plain"
    assert e.archived_at is None
    assert e.config.type == "cloud"
    assert e.config.networking.type == "unrestricted"
    assert e.metadata == {}
    assert client.beta.environments.retrieve(e.id) == e
    raw = client.beta.environments.with_raw_response.retrieve(e.id).json()
    validate_model(BetaEnvironment, raw)


def test_limited_networking_round_trips(client):
    e = client.beta.environments.create(name="locked", description="no egress", config=LIMITED,
                                        metadata={"owner": "qa"})
    assert e.description == "no egress"
    assert e.metadata == {"owner": "qa"}
    net = e.config.networking
    assert net.type == "limited"
    assert net.allowed_hosts == ["api.example.com", "*.pypi.org"]
    assert net.allow_mcp_servers is True and net.allow_package_managers is False
    assert e.config.packages.pip == ["requests==2.32.3"]
    assert e.config.packages.npm == ["left-pad@1.3.0"]
    got = client.beta.environments.retrieve(e.id)
    assert got.config == e.config
    validate_model(BetaEnvironment, client.beta.environments.with_raw_response.retrieve(e.id).json())


@pytest.mark.parametrize("bad_host", ["https://api.example.com/", "api.example.com:443", "bad host", "-x.com", ""])
def test_limited_networking_rejects_a_bad_host(client, bad_host):
    cfg = {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["ok.example.com", bad_host]}}
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(name="bad", config=cfg)
    assert ei.value.status_code == 400
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    assert "config.networking.allowed_hosts[1]" in ei.value.message
    assert list(client.beta.environments.list()) == []


def test_bad_package_and_unknown_config_fields_are_400(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(name="bad", config={"type": "cloud", "packages": {"pip": ["--index-url=x"]}})
    assert "config.packages.pip[0]" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(name="bad", config={"type": "cloud", "networking": {"type": "wide-open"}})
    assert "config" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.create(name="")
    assert "name" in ei.value.message


def test_update(client):
    e = client.beta.environments.create(name="before", metadata={"a": "1", "b": "2"})
    u = client.beta.environments.update(e.id, name="after", description="d", metadata={"a": None, "c": "3"},
                                        config=LIMITED)
    assert u.id == e.id
    assert u.name == "after" and u.description == "d"
    assert u.metadata == {"b": "2", "c": "3"}
    assert u.config.networking.type == "limited"
    assert u.updated_at >= e.updated_at
    assert client.beta.environments.retrieve(e.id) == u
    # a bad config in an update is refused and changes nothing
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.environments.update(e.id, config={"type": "cloud", "networking": {
            "type": "limited", "allowed_hosts": ["http://x"]}})
    assert "allowed_hosts[0]" in ei.value.message
    assert client.beta.environments.retrieve(e.id) == u


def test_list_pagination_and_archive(client):
    ids = {make_env(client).id for _ in range(7)}
    seen = [e.id for e in client.beta.environments.list(limit=3)]
    assert len(seen) == 7 and set(seen) == ids
    p1 = client.beta.environments.list(limit=3)
    assert len(p1.data) == 3 and p1.has_next_page()

    victim = sorted(ids)[0]
    arch = client.beta.environments.archive(victim)
    assert arch.archived_at is not None
    assert victim not in {e.id for e in client.beta.environments.list()}
    assert victim in {e.id for e in client.beta.environments.list(include_archived=True)}
    # an archived environment cannot host new sessions
    a = make_agent(client)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=victim)
    assert ei.value.status_code in (400, 409)


def test_delete(client):
    e = make_env(client)
    r = client.beta.environments.delete(e.id)
    assert r.id == e.id
    assert r.type == "environment_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.retrieve(e.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.delete(e.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.update(e.id, name="x")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.archive(e.id)


def test_delete_of_an_environment_in_use_is_refused(client):
    e = make_env(client)
    a = make_agent(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=e.id)
    with pytest.raises(anthropic.ConflictError):
        client.beta.environments.delete(e.id)
    client.beta.sessions.delete(s.id)
    assert client.beta.environments.delete(e.id).id == e.id


def test_self_hosted_environments_are_accepted(client):
    e = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    assert client.beta.environments.retrieve(e.id).config.type == "self_hosted"
    c = make_env(client)
    assert client.beta.environments.update(c.id, config={"type": "self_hosted"}).config.type == "self_hosted"


def test_null_config_fields_and_an_update_that_keeps_what_it_omits(client):
    e = client.beta.environments.create(name="n", config={
        "type": "cloud",
        "networking": {"type": "limited", "allowed_hosts": None, "allow_mcp_servers": None,
                       "allow_package_managers": True},
        "packages": {"pip": ["requests"], "npm": None},
    })
    assert e.config.networking.allowed_hosts == [] and e.config.packages.npm == []
    u = client.beta.environments.update(e.id, config={"type": "cloud", "networking": None,
                                                      "packages": {"apt": ["git"]}})
    assert u.config.networking == e.config.networking
    assert u.config.packages.pip == ["requests"] and u.config.packages.apt == ["git"]
    validate_model(BetaEnvironment, client.beta.environments.with_raw_response.retrieve(e.id).json())
