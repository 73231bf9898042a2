"""Stored API keys: field validation, the SQLite store, the service's rules (config keys cannot be
changed), the checker with stored keys, the bootstrap key, and the commands' forms (slixmpp)."""

from __future__ import annotations

import sqlite3

import pytest
from aiohttp.test_utils import make_mocked_request
from slixmpp.jid import JID
from slixmpp.plugins.xep_0004 import Form

from tigase_rest.app import secrets_of
from tigase_rest.config import ApiKey, AuthConfig, ConfigError, from_dict
from tigase_rest.errors import HttpError
from tigase_rest.features.apikeys import commands
from tigase_rest.features.apikeys.request import KeyFieldError, masked, new_key, parse_api_key, parse_methods
from tigase_rest.features.apikeys.service import ApiKeyRefused, ApiKeys
from tigase_rest.features.apikeys.store import ApiKeyStore
from tigase_rest.http.auth import ApiKeyChecker


def request(path="/rest/health", key=None, method="GET", host="api.example.com"):
    headers = {"Host": host, **({"Api-Key": key} if key is not None else {})}
    return make_mocked_request(method, path, headers=headers)


def allowed(checker, req) -> bool:
    try:
        return checker.check(req)
    except HttpError as e:
        assert e.status == 403
        return False


# --- validation --------------------------------------------------------------------------------


def test_fields_make_a_key():
    key = parse_api_key(" k-1 ", ["API.example.com", "api.example.com"], ["/rest/avatar/.*\n/rest/health"],
                        ["get", "PUT, post"])
    assert key == ApiKey("k-1", ("api.example.com",), ("/rest/avatar/.*", "/rest/health"), ("GET", "PUT", "POST"))


@pytest.mark.parametrize("fields, reason", [
    ({"key": ""}, "API Key: empty"),
    ({"key": "a b"}, "spaces"),
    ({"key": "x" * 300}, "longer than"),
    ({"paths": ["/rest/(unclosed"]}, "invalid regex"),
    ({"methods": ["FETCH"]}, "'FETCH' is not one of"),
    ({"domains": ["bad host/x"]}, "not a host name"),
    ({"domains": ["a.com"] * 101}, "more than 100"),
])
def test_bad_fields_name_the_field(fields, reason):
    with pytest.raises(KeyFieldError, match=reason):
        parse_api_key(fields.get("key", "k"), fields.get("domains", ()), fields.get("paths", ()),
                      fields.get("methods", ()))


def test_defaults_and_masking():
    assert len(new_key()) == 36 and new_key() != new_key()
    assert parse_methods([]) == ()
    assert masked("0123456789abcdefXYZW") == "****XYZW" and masked("short") == "****"
    assert masked("open_access") == "open_access"


# --- store -------------------------------------------------------------------------------------


def test_store_survives_a_new_instance_and_skips_broken_rows(tmp_path, caplog):
    path = tmp_path / "data" / "apikeys.sqlite3"
    store = ApiKeyStore(path)
    store.put(ApiKey("k1", ("a.com",), ("/rest/.*",), ("GET",)), "admin@example.com")
    store.put(ApiKey("k2"), "admin@example.com")
    store.delete("k2")
    store.close()
    sqlite3.connect(path).execute(
        "INSERT INTO api_keys VALUES ('broken', '[]', '[\"(\"]', '[]', 'x', 0)").connection.commit()
    again = ApiKeyStore(path)
    assert again.load() == [ApiKey("k1", ("a.com",), ("/rest/.*",), ("GET",))]
    assert "skipped" in caplog.text and "broken" not in caplog.text  # the key itself is never logged
    assert again.keys() == {"k1", "broken"}  # still removable


# --- service -----------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path):
    changes = []
    service = ApiKeys(ApiKeyStore(tmp_path / "k.sqlite3"), lambda: (ApiKey("config-key"),),
                      on_change=lambda: changes.append(1))
    service.changes = changes  # type: ignore[attr-defined]
    yield service
    service.close()


def test_add_update_remove(keys):
    keys.add(ApiKey("s1"), "admin@example.com")
    before = keys.stored()
    assert keys.stored() is before  # the same tuple until a change: the checker recompiles only then
    keys.update(ApiKey("s1", paths=("/rest/health",)), "admin@example.com")
    assert keys.stored() == (ApiKey("s1", paths=("/rest/health",)),) and keys.stored() is not before
    with pytest.raises(ApiKeyRefused, match="exists already"):
        keys.add(ApiKey("s1"), "admin@example.com")
    keys.remove("s1", "admin@example.com")
    assert keys.stored() == () and len(keys.changes) == 3
    with pytest.raises(ApiKeyRefused, match="No such"):
        keys.remove("s1", "admin@example.com")
    with pytest.raises(ApiKeyRefused, match="No such"):
        keys.update(ApiKey("s1"), "admin@example.com")


@pytest.mark.parametrize("change", ["add", "update", "remove"])
def test_config_keys_cannot_be_changed(keys, change):
    with pytest.raises(ApiKeyRefused, match=r"in the configuration \(\[auth\] api_keys\)"):
        if change == "remove":
            keys.remove("config-key", "admin@example.com")
        else:
            getattr(keys, change)(ApiKey("config-key", methods=("GET",)), "admin@example.com")


def test_listing_masks_config_keys_only(keys):
    keys.add(ApiKey("stored-key-0123456789"), "admin@example.com")
    assert [(i.shown, i.source) for i in keys.listing()] == [("****", "config"), ("stored-key-0123456789", "stored")]


def test_stored_keys_come_back_after_a_restart(tmp_path):
    first = ApiKeys(ApiKeyStore(tmp_path / "k.sqlite3"), lambda: ())
    first.add(ApiKey("s1", methods=("GET",)), "admin@example.com")
    first.close()
    second = ApiKeys(ApiKeyStore(tmp_path / "k.sqlite3"), lambda: ())
    second.load()
    assert second.stored() == (ApiKey("s1", methods=("GET",)),)


# --- the checker with stored keys --------------------------------------------------------------


def test_stored_keys_have_the_config_keys_rules(keys):
    checker = ApiKeyChecker(AuthConfig(api_keys=(ApiKey("config-key"),)), keys.stored)
    assert not allowed(checker, request(key="s1"))
    keys.add(ApiKey("s1", ("api.example.com",), ("/rest/health",), ("GET",)), "admin@example.com")
    assert allowed(checker, request(key="s1"))  # at once, same checker
    assert not allowed(checker, request(key="s1", host="other.example.com"))
    assert not allowed(checker, request("/rest/stream/", key="s1"))
    assert not allowed(checker, request(key="s1", method="POST"))
    assert allowed(checker, request("/rest/stream/", key="config-key", method="POST"))
    keys.update(ApiKey("s1", paths=("/rest/stream/",)), "admin@example.com")
    assert not allowed(checker, request(key="s1")) and allowed(checker, request("/rest/stream/", key="s1"))
    keys.remove("s1", "admin@example.com")
    assert not allowed(checker, request("/rest/stream/", key="s1"))


def test_a_stored_open_access_key_opens_its_paths(keys):
    checker = ApiKeyChecker(AuthConfig(api_keys=(ApiKey("config-key"),)), keys.stored)
    assert not allowed(checker, request())
    keys.add(ApiKey("open_access", paths=("/rest/health",)), "admin@example.com")
    assert checker.check(request()) is False  # open, not "with a key"
    assert not allowed(checker, request("/rest/stream/"))


def test_the_merged_keys_are_compiled_once_per_change(keys):
    checker = ApiKeyChecker(AuthConfig(api_keys=(ApiKey("config-key"),)), keys.stored)
    first = checker.keys()
    assert checker.keys() is first
    keys.add(ApiKey("s1"), "admin@example.com")
    assert checker.keys() is not first and checker.keys() is checker.keys()


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_key_works_only_while_no_key_exists(keys):
    none = ApiKeyChecker(AuthConfig(), keys.stored, bootstrap="boot-key")
    assert allowed(none, request(key="boot-key"))
    assert allowed(none, request("/rest/stream/", key="boot-key", method="POST"))  # no limits
    assert not allowed(none, request(key="other"))
    keys.add(ApiKey("s1"), "admin@example.com")
    assert not allowed(none, request(key="boot-key")) and allowed(none, request(key="s1"))
    keys.remove("s1", "admin@example.com")
    assert allowed(none, request(key="boot-key"))
    configured = ApiKeyChecker(AuthConfig(api_keys=(ApiKey("c"),)), lambda: (), bootstrap="boot-key")
    assert not allowed(configured, request(key="boot-key"))
    open_only = ApiKeyChecker(AuthConfig(api_keys=(ApiKey("open_access", paths=("/x",)),)), lambda: (),
                              bootstrap="boot-key")
    assert not allowed(open_only, request(key="boot-key"))


def test_bootstrap_variable_is_known_and_secret():
    cfg = from_dict({"xmpp": {"secret": "s"}}, {"TIGASE_REST_BOOTSTRAP_API_KEY": " boot-key-123 "})
    assert cfg.bootstrap_api_key == "boot-key-123"
    assert "boot-key-123" in secrets_of(cfg) and "boot-key-123" not in repr(cfg)
    with pytest.raises(ConfigError, match="TIGASE_REST_BOOTSTRAP_API_KEY"):
        from_dict({"xmpp": {"secret": "s"}}, {"TIGASE_REST_BOOTSTRAP_API_KEY": "open_access"})
    with pytest.raises(ConfigError, match="unknown environment variable TIGASE_REST_BOOTSTRAP_KEY"):
        from_dict({"xmpp": {"secret": "s"}}, {"TIGASE_REST_BOOTSTRAP_KEY": "x"})


# --- the command handlers (slixmpp session dicts, no server) -----------------------------------


class FakeIq(dict):
    pass


def session_for(sender: str, payload=None) -> dict:
    return {"id": "sid", "from": JID(sender), "payload": payload if payload is not None else [], "notes": None,
            "has_next": False, "allow_complete": False, "next": None}


def submit(**fields) -> Form:
    form = Form()
    form["type"] = "submit"
    for var, values in fields.items():
        field = form.add_field(var=var.replace("_", "-"))
        field.xml.clear()
        field.xml.set("var", var.replace("_", "-"))
        for value in values if isinstance(values, list) else [values]:
            value_xml = field.xml.makeelement("{jabber:x:data}value", {})
            value_xml.text = value
            field.xml.append(value_xml)
    return form


@pytest.fixture
def handlers(keys):
    admins = {"admin@example.com"}
    return {node: handler for node, _, handler in commands.handlers(keys, admins.__contains__)}


def test_add_is_a_form_then_a_submission(handlers, keys):
    session = handlers["api-key-add"](FakeIq({"from": JID("admin@example.com/x")}), session_for("admin@example.com/x"))
    form = session["payload"]
    fields = {f.get("var"): f for f in form.xml.findall("{jabber:x:data}field")}
    assert list(fields) == ["api-key", "domains", "paths", "methods"]
    default = fields["api-key"].findtext("{jabber:x:data}value")
    assert len(default) == 36 and session["next"] is not None
    session = session["next"](submit(api_key=default, paths=["/rest/health"], methods=["GET"]), session)
    assert session["notes"][0][0] == "info" and session["next"] is None
    assert keys.stored() == (ApiKey(default, (), ("/rest/health",), ("GET",)),)


def test_one_shot_update_remove_and_errors(handlers, keys):
    admin = FakeIq({"from": JID("admin@example.com/x")})
    handlers["api-key-add"](admin, session_for("admin@example.com/x", submit(api_key="s1")))
    assert keys.stored() == (ApiKey("s1"),)
    # update: the key alone shows its form prefilled; with limits it applies them
    session = handlers["api-key-update"](admin, session_for("admin@example.com/x", submit(api_key="s1")))
    assert session["payload"]["type"] == "form" and session["next"] is not None
    session = session["next"](submit(api_key="s1", methods=["GET"]), session)
    assert keys.stored() == (ApiKey("s1", methods=("GET",)),)
    session = handlers["api-key-update"](admin, session_for("admin@example.com/x",
                                                            submit(api_key="s1", paths=["(bad"])))
    assert session["notes"][0][0] == "error" and "invalid regex" in session["notes"][0][1]
    session = handlers["api-key-remove"](admin, session_for("admin@example.com/x", submit(api_key="config-key")))
    assert session["notes"][0][0] == "error" and "in the configuration" in session["notes"][0][1]
    session = handlers["api-key-list"](admin, session_for("admin@example.com/x"))
    items = session["payload"].xml.findall("{jabber:x:data}item")
    assert [[f.findtext("{jabber:x:data}value") for f in item][:2] for item in items] == [
        ["****", "config"], ["s1", "stored"]]
    handlers["api-key-remove"](admin, session_for("admin@example.com/x", submit(api_key="s1")))
    assert keys.stored() == ()


def test_non_admins_are_forbidden_at_every_stage(handlers, keys):
    from slixmpp.exceptions import XMPPError

    for node in ("api-key-add", "api-key-update", "api-key-remove", "api-key-list"):
        with pytest.raises(XMPPError) as e:
            handlers[node](FakeIq({"from": JID("alice@example.com/x")}), session_for("alice@example.com/x"))
        assert e.value.condition == "forbidden"
    # a session started by an admin, submitted when the sender is no admin any more
    session = handlers["api-key-add"](FakeIq({"from": JID("admin@example.com/x")}), session_for("admin@example.com/x"))
    session["from"] = JID("alice@example.com/x")
    with pytest.raises(XMPPError):
        session["next"](submit(api_key="s1"), session)
    assert keys.stored() == ()


def test_the_key_field_is_redacted_in_logged_stanzas():
    import logging

    from tigase_rest.logs import RedactingFilter

    line = ('RECV: <command node="api-key-add"><x xmlns="jabber:x:data" type="submit">'
            '<field var="api-key"><value>8f1c-secret-uuid</value></field>'
            '<field var="paths"><value>/rest/health</value></field></x></command>')
    record = logging.LogRecord("slixmpp", logging.DEBUG, "", 0, line, None, None)
    RedactingFilter().filter(record)
    assert "8f1c-secret-uuid" not in record.getMessage() and "/rest/health" in record.getMessage()
