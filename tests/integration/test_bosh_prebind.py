"""BOSH pre-binding (reference 2.3) against a real Prosody: POST /rest/adhoc/bosh@localhost.

The acceptance check is a takeover: a second, plain HTTP client continues the pre-bound session
with the returned sid and rid, and real messages flow both ways between it and bob's client.
"""

from __future__ import annotations

import asyncio
import re
import time
from xml.etree import ElementTree

import aiohttp
import pytest

from rest import ADMIN, ALICE, call
from tigase_rest.features.bosh import INVALID_DATA, NO_PERMISSION, NOT_SUPPORTED

URL = "/rest/adhoc/bosh@localhost"
NODE = "pre-bind-bosh-session"
XML = {"Content-Type": "application/xml"}
CLIENT_NS = "{jabber:client}"


def prebind_xml(user: str, hold: str = "1", wait: str = "60") -> str:
    """The reference request, verbatim but for the values."""
    return f"""<command>
  <node>pre-bind-bosh-session</node>
  <fields>
    <item>
      <var>from</var>
      <value>{user}</value>
    </item>
    <item>
      <var>hold</var>
      <value>{hold}</value>
    </item>
    <item>
      <var>wait</var>
      <value>{wait}</value>
    </item>
  </fields>
</command>"""


def prebind_json(user: str, **extra: str) -> dict:
    fields = [{"var": "from", "value": user}] + [{"var": k, "value": v} for k, v in extra.items()]
    return {"command": {"node": NODE, "fields": fields}}


def values(command: dict) -> dict:
    return {f["var"]: f.get("value") for f in command["fields"]}


async def bosh_post(bosh_url: str, sid: str, rid: int, payload: str = "", timeout: float = 15) -> ElementTree.Element:
    """What a web client's BOSH library sends: a fresh HTTP client, no relation to the component."""
    body = f"<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{sid}'>{payload}</body>"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.post(bosh_url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}) as response:
            assert response.status == 200
            return ElementTree.fromstring(await response.text())


async def test_alice_prebinds_herself_in_xml_and_another_client_takes_over(component, prosody, xmpp_client):
    bob = await xmpp_client("bob", resource="phone")
    answer = await call(component, "POST", URL, auth=ALICE, headers=XML, body=prebind_xml("alice@localhost", wait="10"))
    assert answer.status == 200, answer.text
    command = ElementTree.fromstring(answer.text)
    assert (command.findtext("jid"), command.findtext("node"), command.findtext("status")) == (
        "bosh@localhost", NODE, "completed")
    fields = {f.findtext("var"): f for f in command.find("fields")}
    assert list(fields) == ["from", "hostname", "rid", "sid", "hold", "wait"]
    assert fields["from"].findtext("type") == "jid-single" and fields["rid"].findtext("type") == "text-single"
    jid, sid, rid = fields["from"].findtext("value"), fields["sid"].findtext("value"), int(fields["rid"].findtext("value"))
    assert re.fullmatch(r"alice@localhost/.+", jid)  # a bare JID gets a random resource
    assert fields["hostname"].findtext("value") == "127.0.0.1"
    assert (fields["hold"].findtext("value"), fields["wait"].findtext("value")) == ("1", "10")
    assert 0 < rid < 2**53

    # The returned rid is the next one: the takeover's first request carries it as is.
    sending = asyncio.create_task(bosh_post(prosody.bosh_url, sid, rid, (
        "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>hello from the web</body></message>")))
    received = await bob.next_message(timeout=10)
    assert (str(received["from"]), received["body"]) == (jid, "hello from the web")

    bob.xmpp.send_message(mto=jid, mbody="hello, web client", mtype="chat")
    # Prosody answers the request it holds (or, if that one already returned, the next poll).
    body, rid, deadline = await asyncio.wait_for(sending, 15), rid + 1, time.monotonic() + 15
    while not body.findall(f"{CLIENT_NS}message"):
        assert time.monotonic() < deadline, "the BOSH client never received bob's message"
        body, rid = await bosh_post(prosody.bosh_url, sid, rid), rid + 1
    message = body.find(f"{CLIENT_NS}message")
    assert message.get("from") == bob.jid and message.get("to") == jid
    assert message.findtext(f"{CLIENT_NS}body") == "hello, web client"


async def test_alice_prebinds_a_full_jid_in_json(component, prosody, xmpp_client):
    bob = await xmpp_client("bob", resource="desk")
    answer = await call(component, "POST", URL, auth=ALICE, body=prebind_json("alice@localhost/web-tab", wait="2"))
    assert answer.status == 200, answer.text
    command = answer.json()["command"]
    assert command["status"] == "completed" and command["type"] == "result"
    assert {"var": "from", "label": "JID", "type": "jid-single", "value": "alice@localhost/web-tab"} in command["fields"]
    got = values(command)
    assert (got["hold"], got["wait"]) == ("1", "2")

    # Nothing to deliver: Prosody holds the request for `wait` seconds, then answers an empty body.
    await bosh_post(prosody.bosh_url, got["sid"], int(got["rid"]),
                    "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>json</body></message>")
    received = await bob.next_message(timeout=10)
    assert (str(received["from"]), received["body"]) == ("alice@localhost/web-tab", "json")


async def test_defaults_are_tigase_s(component):
    answer = await call(component, "POST", URL, auth=ALICE, body=prebind_json("alice@localhost"))
    got = values(answer.json()["command"])
    assert (got["hold"], got["wait"]) == ("1", "60")


async def test_admin_prebinding_for_alice_is_refused_and_the_session_terminated(component, prosody):
    # Prosody ignores the SASL authzid and binds the admin: the component notices and cleans up.
    answer = await call(component, "POST", URL, auth=ADMIN, body=prebind_json("alice@localhost"))
    assert answer.status == 200, answer.text
    command = answer.json()["command"]
    assert command["fields"] == [{"var": "Error", "type": "fixed", "value": NOT_SUPPORTED}]
    assert command["note"]["type"] == "error" and "admin@localhost" in command["note"]["value"]
    sid = re.search(r"BOSH session \(([^)]+)\) was terminated", command["note"]["value"]).group(1)
    gone = await bosh_post(prosody.bosh_url, sid, 1)
    assert (gone.get("type"), gone.get("condition")) == ("terminate", "item-not-found")


async def test_non_admin_cannot_prebind_another_user(component):
    answer = await call(component, "POST", URL, auth=ALICE, body=prebind_json("bob@localhost"))
    assert answer.status == 200
    command = answer.json()["command"]
    assert command["fields"] == [{"var": "Error", "type": "fixed", "value": NO_PERMISSION}]
    assert "alice@localhost is not an admin" in command["note"]["value"]
    assert "sid" not in values(command)


async def test_the_form_in_xml_and_json(component):
    answer = await call(component, "POST", URL, auth=ALICE, headers=XML,
                        body="<command><node>pre-bind-bosh-session</node></command>")
    assert answer.status == 200
    command = ElementTree.fromstring(answer.text)
    assert command.findtext("title") == "Pre-bind BOSH user session"
    assert command.findtext("status") == "executing"
    fields = {f.findtext("var"): f.findtext("type") for f in command.find("fields")}
    assert fields == {"FORM_TYPE": "hidden", "from": "jid-single", "hold": "text-single", "wait": "text-single"}

    answer = await call(component, "POST", URL, auth=ALICE, body={"command": {"node": NODE}})
    command = answer.json()["command"]
    assert (command["jid"], command["node"], command["type"], command["status"]) == (
        "bosh@localhost", NODE, "form", "executing")
    assert (values(command)["hold"], values(command)["wait"]) == ("1", "60")


async def test_listing_and_unknown_nodes(component):
    answer = await call(component, "GET", URL + "?type=application/json", auth=ALICE)
    assert answer.json() == {"items": [{"jid": "bosh@localhost", "node": NODE, "name": "Pre-bind BOSH user session"}]}
    answer = await call(component, "POST", URL, auth=ALICE, body={"command": {"node": "something-else"}})
    assert answer.status == 404
    assert answer.json()["error"]["condition"] == "item-not-found"
    assert "pre-bind-bosh-session" in answer.json()["error"]["reason"]


@pytest.mark.parametrize("fields, reason", [
    ({"from": "not a jid@@"}, "'from' is not a valid JID"),
    ({"from": "localhost"}, "'from' must be a user's JID"),
    ({"from": "alice@localhost", "hold": "0"}, "'hold' must be a whole number from 1 to 10"),
    ({"from": "alice@localhost", "wait": "sixty"}, "'wait' must be a whole number"),
])
async def test_invalid_data_is_tigase_error_field_with_the_reason(component, fields, reason):
    body = {"command": {"node": NODE, "fields": [{"var": k, "value": v} for k, v in fields.items()]}}
    answer = await call(component, "POST", URL, auth=ALICE, body=body)
    assert answer.status == 200
    command = answer.json()["command"]
    assert command["fields"] == [{"var": "Error", "type": "fixed", "value": INVALID_DATA}]
    assert reason in command["note"]["value"]


async def test_without_bosh_url_the_answer_is_501(component_factory):
    component = component_factory(xmpp={"bosh_url": None})
    answer = await call(component, "POST", URL, auth=ALICE, body=prebind_json("alice@localhost"))
    assert answer.status == 501
    assert "bosh_url" in answer.json()["error"]["reason"]


async def test_prebinds_per_account_are_limited_per_minute(component_factory):
    # Each pre-bind is a full login as the caller: past the limit the answer is 429, and no login is made.
    component = component_factory(auth={"max_prebinds_per_minute": 2})
    for _ in range(2):
        answer = await call(component, "POST", URL, auth=ALICE, body=prebind_json("alice@localhost"))
        assert answer.status == 200 and values(answer.json()["command"]).get("sid"), answer.text
    third = await call(component, "POST", URL, auth=ALICE, body=prebind_json("alice@localhost"))
    assert third.status == 429 and "max_prebinds_per_minute" in third.text, third.text
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert component.log_text().count("BOSH session pre-bound for alice@localhost") == 2
