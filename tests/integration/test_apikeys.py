"""API keys managed like Tigase, against the real server: an admin's own XMPP client (slixmpp) runs
the api-key-* commands on http.localhost through XEP-0050; the keys work on the next request,
survive SIGHUP and a restart (data_dir); non-admins are forbidden; config keys stay as they are; the
bootstrap key (TIGASE_REST_BOOTSTRAP_API_KEY) works only until a key exists."""

from __future__ import annotations

import asyncio
import signal
import time
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from rest import ADMIN, call

DATA = "{jabber:x:data}"
COMPONENT = "http.localhost"


async def command(client, node: str, fields: dict | None = None, sessionid: str | None = None,
                  action: str = "execute"):
    """One XEP-0050 step from a real client; returns the <command/> element of the reply."""
    xmpp = client.xmpp
    for plugin in ("xep_0030", "xep_0004", "xep_0050"):
        xmpp.register_plugin(plugin)
    iq = xmpp.Iq()
    iq["type"] = "set"
    iq["to"] = COMPONENT
    iq["command"]["node"] = node
    iq["command"]["action"] = action
    if sessionid:
        iq["command"]["sessionid"] = sessionid
    if fields is not None:
        form = ET.SubElement(iq["command"].xml, f"{DATA}x", {"type": "submit"})
        for var, values in fields.items():
            field = ET.SubElement(form, f"{DATA}field", {"var": var})
            for value in values if isinstance(values, list) else [values]:
                ET.SubElement(field, f"{DATA}value").text = value
    reply = await iq.send(timeout=10)
    return reply.xml.find("{http://jabber.org/protocol/commands}command")


def fields_of(command_xml) -> dict[str, list[str]]:
    form = command_xml.find(f"{DATA}x")
    return {f.get("var"): [v.text or "" for v in f.findall(f"{DATA}value")] for f in form.findall(f"{DATA}field")}


def note(command_xml) -> tuple[str, str]:
    element = command_xml.find("{http://jabber.org/protocol/commands}note")
    return element.get("type"), element.text


async def status(component, path: str, key: str, method: str = "GET", **kwargs) -> int:
    return (await call(component, method, path, headers={"Api-Key": key}, **kwargs)).status


STANZA = '<message xmlns="jabber:client" type="chat" to="bob@localhost"><body>key test</body></message>'


@pytest.mark.portable
async def test_admin_manages_a_key_over_xep_0050(component_factory, xmpp_client, tmp_path):
    storage = {"data_dir": str(tmp_path / "data")}
    component = component_factory(storage=storage)
    admin = await xmpp_client("admin", resource="keys")

    # api-key-add: the first execute is the form, with a random UUID as the key
    first = await command(admin, "api-key-add")
    assert first.get("status") == "executing"
    form = fields_of(first)
    assert list(form) == ["api-key", "domains", "paths", "methods"]
    key = form["api-key"][0]
    assert len(key) == 36
    assert await status(component, "/rest/health", key) == 403
    done = await command(admin, "api-key-add", {"api-key": key}, first.get("sessionid"))
    assert done.get("status") == "completed" and note(done)[0] == "info"

    # works at once, beside the config's key
    assert await status(component, "/rest/health", key) == 200
    assert (await call(component, "POST", "/rest/stream/", body=STANZA,
                       headers={"Api-Key": key, "Content-Type": "application/xml"})).status == 200
    assert await status(component, "/rest/health", "test-key") == 200

    # api-key-update: choose the key, get its form, limit it to /rest/health
    chooser = await command(admin, "api-key-update")
    options = [o.findtext(f"{DATA}value") for o in chooser.find(f"{DATA}x").iter(f"{DATA}option")]
    assert options == [key]
    prefilled = await command(admin, "api-key-update", {"api-key": key}, chooser.get("sessionid"), "next")
    assert fields_of(prefilled)["paths"] == []
    done = await command(admin, "api-key-update", {"api-key": key, "paths": ["/rest/health"], "methods": ["GET"]},
                         chooser.get("sessionid"), "complete")
    assert done.get("status") == "completed" and note(done)[0] == "info"
    assert await status(component, "/rest/health", key) == 200
    assert (await call(component, "POST", "/rest/stream/", body=STANZA,
                       headers={"Api-Key": key, "Content-Type": "application/xml"})).status == 403

    # api-key-list: the stored key in full, the config's masked
    listed = await command(admin, "api-key-list")
    rows = [[f.findtext(f"{DATA}value") for f in item] for item in listed.find(f"{DATA}x").findall(f"{DATA}item")]
    assert [row[:2] for row in rows] == [["****", "config"], [key, "stored"]]
    assert "masked" in note(listed)[1]

    # a config key cannot be removed or changed
    refused = await command(admin, "api-key-remove", {"api-key": "test-key"})
    assert note(refused) == ("error", "This API key is in the configuration ([auth] api_keys): it cannot be "
                                      "removed with a command; edit the config file and reload (SIGHUP)")
    refused = await command(admin, "api-key-update", {"api-key": "test-key", "paths": ["/rest/health"]})
    assert note(refused)[0] == "error" and "in the configuration" in note(refused)[1]
    over_rest = await call(component, "POST", "/rest/adhoc/http.localhost?type=application/json",
                           body={"command": {"node": "api-key-remove", "fields": [{"var": "api-key", "value": "test-key"}]}})
    assert over_rest.status == 422 and "in the configuration" in over_rest.text
    assert (await call(component, "POST", "/rest/stream/", body=STANZA,
                       headers={"Content-Type": "application/xml"})).status == 200  # test-key, unlimited

    # SIGHUP keeps it
    component.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "Reload: handler scripts reloaded" not in component.log_text():
        assert time.monotonic() < deadline, "no reload logged"
        await asyncio.sleep(0.05)
    assert await status(component, "/rest/health", key) == 200

    # a restart keeps it (data_dir), with its limits
    component.stop()
    component = component_factory(storage=storage)
    assert await status(component, "/rest/health", key) == 200
    assert (await call(component, "POST", "/rest/stream/", body=STANZA,
                       headers={"Api-Key": key, "Content-Type": "application/xml"})).status == 403

    # api-key-remove: refused from the next request
    chooser = await command(admin, "api-key-remove")
    done = await command(admin, "api-key-remove", {"api-key": key}, chooser.get("sessionid"))
    assert note(done)[0] == "info"
    assert await status(component, "/rest/health", key) == 403
    assert key not in component.log_text()  # debug level: every stanza is logged, redacted


@pytest.mark.portable
async def test_non_admins_are_forbidden(component, xmpp_client):
    alice = await xmpp_client("alice", resource="keys")
    for node in ("api-key-add", "api-key-update", "api-key-remove", "api-key-list"):
        with pytest.raises(IqError) as error:
            await command(alice, node)
        assert error.value.condition == "forbidden"
    with pytest.raises(IqError) as error:
        await command(alice, "api-key-add", {"api-key": "alices-own-key"})
    assert error.value.condition == "forbidden"
    assert await status(component, "/rest/health", "alices-own-key") == 403


BOOT = "bootstrap-3f0c9a1e-provisioning"


@pytest.mark.portable
async def test_bootstrap_key_works_until_a_key_is_added(component_factory):
    component = component_factory(auth={"api_keys": []}, env={"TIGASE_REST_BOOTSTRAP_API_KEY": BOOT})
    assert await status(component, "/rest/health", BOOT) == 200
    assert await status(component, "/rest/health", "other") == 403
    # unattended provisioning over REST: the bootstrap key and an admin's login run api-key-add at once
    answer = await call(component, "POST", "/rest/adhoc/http.localhost", auth=ADMIN, headers={"Api-Key": BOOT},
                        body={"command": {"node": "api-key-add", "fields": [
                            {"var": "api-key", "value": "provisioned-key-0123456789"},
                            {"var": "paths", "value": ["/rest/health", "/rest/stream/.*"]}]}})
    assert answer.status == 200, answer.text
    assert answer.json()["command"]["status"] == "completed"
    assert await status(component, "/rest/health", "provisioned-key-0123456789") == 200
    assert await status(component, "/rest/health", BOOT) == 403  # another key exists now
    assert await status(component, "/rest/avatar/alice@localhost", "provisioned-key-0123456789") == 403  # its paths
    again = await call(component, "POST", "/rest/adhoc/http.localhost", auth=ADMIN,
                       headers={"Api-Key": "provisioned-key-0123456789"},
                       body={"command": {"node": "api-key-add", "fields": [
                           {"var": "api-key", "value": "provisioned-key-0123456789"}]}})
    assert again.status == 403  # /rest/adhoc is outside the key's paths
    again = await call(component, "POST", "/rest/adhoc/http.localhost", auth=ADMIN, headers={"Api-Key": BOOT},
                       body={"command": {"node": "api-key-list"}})
    assert again.status == 403  # nor the bootstrap key, now
    log = component.log_text()
    assert "the only API key" in log and BOOT not in log and "provisioned-key-0123456789" not in log


@pytest.mark.portable
async def test_bootstrap_key_is_inactive_beside_config_keys(component_factory):
    component = component_factory(env={"TIGASE_REST_BOOTSTRAP_API_KEY": BOOT})
    assert await status(component, "/rest/health", BOOT) == 403
    assert await status(component, "/rest/health", "test-key") == 200
    assert "not in use" in component.log_text()
