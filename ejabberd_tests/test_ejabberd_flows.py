"""The integration flows of tests/integration (test_stream.py, test_adhoc.py), re-run on ejabberd 23.01.

Real server, real component process, real slixmpp clients. Where ejabberd answers differently from
Prosody the test says so; each such difference is one a user of the REST API sees (README). The
component is configured without ``[auth] admins``: who is an admin is what ejabberd's ACL offers
each caller's session (``acl: admin``), and the component itself is an admin through
``acl: admin: server: http.localhost``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from xml.etree import ElementTree

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import connect_client
from rest import ALICE, basic, call

ADMIN_NS = "http://jabber.org/protocol/admin#"
CLIENT_NS = "{jabber:client}"
STANZAS_NS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
XML = {"Content-Type": "application/xml"}

# The reference documentation's /rest/stream examples (2.2.6), example.com -> localhost.
EXAMPLE_1 = """<message xmlns="jabber:client" type="chat" to="test@localhost/resource-1">
    <body>Example message 1</body>
</message>"""
EXAMPLE_2 = """<message xmlns="jabber:client" type="chat" to="test@localhost">
    <body>Example message 2</body>
</message>"""
EXAMPLE_3 = """<message xmlns="jabber:client" type="chat" from="sender@example.com" to="test@localhost/resource-1">
    <body>Example message 1</body>
</message>"""


def xml(text):
    return ElementTree.fromstring(text)


async def health(component):
    answer = await call(component, "GET", "/rest/health?type=application/json", auth=None)
    return answer.status, answer.json()["health"]


async def post_stanza(component, body, path="/rest/stream/"):
    return await call(component, "POST", path, body=body, headers=XML)


async def received(client, component):
    """The client's next message; on a timeout, fail with what the component logged about the link."""
    try:
        return await client.next_message()
    except asyncio.TimeoutError:
        pass
    lines = [line for line in component.log_text().splitlines() if "tigase_rest.xmpp.component" in line]
    pytest.fail("no message within 5 s; the component's link log:\n" + "\n".join(lines[-8:]))


# --- health -------------------------------------------------------------------------------------


async def test_health_is_200_once_linked_to_ejabberd(component):
    status, report = await health(component)
    assert status == 200
    assert report["xmpp_link"] == "up" and report["component_jid"] == "http.localhost"
    assert report["link_connects"] == 1 and report["failed_scripts"] == 0


# --- /rest/stream -------------------------------------------------------------------------------


@pytest.mark.parametrize("example, sender, body", [
    (EXAMPLE_1, "http.localhost", "Example message 1"),
    (EXAMPLE_2, "http.localhost", "Example message 2"),
    (EXAMPLE_3, "sender@example.com", "Example message 1"),  # needs check_from: false
], ids=["to-full-jid", "to-bare-jid", "with-foreign-from"])
async def test_reference_example_reaches_the_client(component, xmpp_client, example, sender, body):
    test = await xmpp_client("test", resource="resource-1")
    answer = await post_stanza(component, example)
    assert (answer.status, answer.text) == (200, "")
    message = await received(test, component)
    assert (message["body"], message["from"].bare, message["type"]) == (body, sender, "chat")
    # The link must survive the post: ejabberd closes a component stream that sends a stanza
    # without 'from' (improper-addressing), and a reconnect would show as a second connect.
    status, report = await health(component)
    assert (status, report["link_connects"]) == (200, 1), component.log_text()[-3000:]


async def test_stanza_without_from_leaves_the_link_up_for_the_next_request(component, xmpp_client):
    test = await xmpp_client("test", resource="resource-1")
    assert (await post_stanza(component, EXAMPLE_2)).status == 200
    # At once, on the same link: a dropped link answers 503 (or loses the message) here.
    answer = await post_stanza(component, EXAMPLE_3)
    assert answer.status == 200, answer.text
    bodies = set()
    for _ in range(2):
        bodies.add((await received(test, component))["body"])
    assert bodies == {"Example message 1", "Example message 2"}


async def test_iq_without_from_returns_the_reply(component):
    answer = await post_stanza(component, '<iq type="get" to="localhost" id="ping-1"><ping xmlns="urn:xmpp:ping"/></iq>')
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
    reply = xml(answer.text)
    assert reply.tag == CLIENT_NS + "iq"
    assert (reply.get("type"), reply.get("id"), reply.get("from")) == ("result", "ping-1", "localhost")


async def test_iq_error_reply_comes_back_in_jabber_client(component):
    # ejabberd writes the component's <error/> in jabber:component:accept; the API answers jabber:client.
    answer = await post_stanza(component, '<iq type="get" to="localhost"><query xmlns="urn:example:unknown"/></iq>')
    assert answer.status == 200  # an IQ error is the answer, as Tigase
    reply = xml(answer.text)
    assert (reply.tag, reply.get("type")) == (CLIENT_NS + "iq", "error")
    error = reply.find(CLIENT_NS + "error")
    assert error is not None and error.find(STANZAS_NS + "service-unavailable") is not None
    assert error.findtext(STANZAS_NS + "text") == "No module is handling this query"


async def test_iq_timeout_is_504(component_factory, xmpp_client):
    component = component_factory(xmpp={"iq_timeout": 1})
    bob = await xmpp_client("bob", resource="silent")
    bob.xmpp.register_handler(Callback("swallow", MatchXPath("{jabber:client}iq/{urn:example:silent}q"), lambda _: None))
    started = time.monotonic()
    answer = await call(component, "POST", "/rest/stream/", headers=XML,
                        body='<iq type="get" to="bob@localhost/silent"><q xmlns="urn:example:silent"/></iq>')
    assert answer.status == 504
    assert "remote-server-timeout" in answer.text and "bob@localhost/silent" in answer.text
    assert 0.9 < time.monotonic() - started < 5


async def test_stream_needs_an_admin_of_ejabberd(component):
    answer = await call(component, "POST", "/rest/stream/", auth=ALICE, headers=XML, body=EXAMPLE_2)
    assert answer.status == 403
    assert "alice@localhost is not an admin" in answer.text


# --- /rest/adhoc --------------------------------------------------------------------------------


async def test_admin_lists_the_admin_commands_in_xml_and_json(component):
    answer = await call(component, "GET", "/rest/adhoc/localhost")
    assert answer.status == 200
    nodes = {item.findtext("node"): item for item in xml(answer.text).findall("item")}
    for command in ("add-user", "delete-user", "end-user-session", "get-online-users-list",
                    "get-registered-users-list", "user-stats", "change-user-password"):
        assert ADMIN_NS + command in nodes
    assert ADMIN_NS + "get-user-roster" not in nodes  # not in ejabberd 23.01
    assert nodes[ADMIN_NS + "add-user"].findtext("jid") == "localhost"

    answer = await call(component, "GET", "/rest/adhoc/localhost", headers={"Content-Type": "application/json"})
    items = answer.json()["items"]
    assert {"jid": "localhost", "node": ADMIN_NS + "end-user-session", "name": "End User Session"} in items
    assert len([i for i in items if i["node"].startswith(ADMIN_NS)]) == 21


async def test_normal_user_sees_only_ping_and_gets_403_with_ejabberds_text(component):
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ALICE)
    assert answer.status == 200
    assert answer.json()["items"] == [{"jid": "localhost", "node": "ping", "name": "Ping"}]

    answer = await call(component, "POST", "/rest/adhoc/localhost", auth=ALICE,
                        body={"command": {"node": ADMIN_NS + "get-online-users-list"}})
    assert answer.status == 403
    error = answer.json()["error"]
    assert (error["condition"], error["text"]) == ("forbidden", "Access denied by service policy")

    answer = await call(component, "POST", "/rest/adhoc/localhost", auth=ALICE, body={"command": {"node": "ping"}})
    pong = answer.json()["command"]
    assert (answer.status, pong["status"], pong["note"]) == (200, "completed", {"value": "Pong", "type": "info"})


async def test_add_user_form_then_one_shot_add_and_the_user_logs_in(component, ejabberd):
    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML,
                        body=f"<command><node>{ADMIN_NS}add-user</node></command>")
    command = xml(answer.text)
    assert (answer.status, command.findtext("status")) == (200, "executing")
    fields = {f.findtext("var"): f.findtext("type") for f in command.find("fields")}
    assert fields == {"FORM_TYPE": "hidden", "accountjid": "jid-single", "password": "text-private",
                      "password-verify": "text-private"}

    name = "new-" + uuid.uuid4().hex[:8]
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user",
        "fields": [{"var": "accountjid", "value": f"{name}@localhost"},
                   {"var": "password", "value": "s3cret-0"},
                   {"var": "password-verify", "value": "s3cret-0"}]}})
    assert answer.status == 200
    result = answer.json()["command"]
    assert result["status"] == "completed"
    assert "note" not in result and result["fields"] == []  # ejabberd confirms with an empty <command/>

    # the new account logs in: over the REST API (a normal user) and with a real client
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json",
                        auth=basic(f"{name}@localhost", "s3cret-0"))
    assert (answer.status, [i["node"] for i in answer.json()["items"]]) == (200, ["ping"])
    client = await connect_client(f"{name}@localhost", "s3cret-0", "127.0.0.1", ejabberd.c2s_port)
    await client.disconnect()


async def test_add_user_errors_map_to_statuses(component):
    name = "dup-" + uuid.uuid4().hex[:8]
    fields = [{"var": "accountjid", "value": f"{name}@localhost"},
              {"var": "password", "value": "pw"}, {"var": "password-verify", "value": "pw"}]
    body = {"command": {"node": ADMIN_NS + "add-user", "fields": fields}}
    assert (await call(component, "POST", "/rest/adhoc/localhost", body=body)).status == 200
    answer = await call(component, "POST", "/rest/adhoc/localhost", body=body)
    assert (answer.status, answer.json()["error"]["condition"]) == (409, "conflict")

    # Without password-verify (Prosody accepts that), ejabberd refuses the submission as an
    # unknown command: item-not-found.
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "fields": fields[:2]}})
    error = answer.json()["error"]
    assert (answer.status, error["condition"], error["text"]) == (404, "item-not-found", "No hook has processed this command")


async def test_multi_stage_command_driven_with_sessionid_and_action(component, ejabberd):
    name = "staged-" + uuid.uuid4().hex[:8]
    first = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": ADMIN_NS + "add-user"}})
    stage = first.json()["command"]
    assert (stage["status"], stage["actions"], stage["default_action"]) == ("executing", ["complete"], "complete")
    assert stage["type"] == "form" and stage["title"] == "Add User" and stage["sessionid"]
    second = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "sessionid": stage["sessionid"], "action": "complete",
        "fields": [{"var": "accountjid", "value": f"{name}@localhost"},
                   {"var": "password", "value": "pw"}, {"var": "password-verify", "value": "pw"}]}})
    done = second.json()["command"]
    assert (second.status, done["status"], done["sessionid"]) == (200, "completed", stage["sessionid"])
    assert name in ejabberd.ctl("registered_users", "localhost").split()

    first = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": ADMIN_NS + "add-user"}})
    cancel = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "sessionid": first.json()["command"]["sessionid"], "action": "cancel"}})
    assert (cancel.status, cancel.json()["command"]["status"]) == (200, "canceled")


async def test_get_online_users_list_is_answered_at_once(component, xmpp_client):
    await xmpp_client("bob", resource="online")
    # ejabberd runs this command on the first execute: a completed command whose data form still
    # says type="form". The API passes both through; "status" is what tells a client it is done.
    answer = await call(component, "POST", "/rest/adhoc/localhost",
                        body={"command": {"node": ADMIN_NS + "get-online-users-list"}})
    command = answer.json()["command"]
    assert (answer.status, command["status"], command["type"]) == (200, "completed", "form")
    assert "actions" not in command
    online = next(f for f in command["fields"] if f["var"] == "onlineuserjids")
    assert online["type"] == "jid-multi" and "bob@localhost" in online["value"]

    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML,
                        body=f"<command><node>{ADMIN_NS}get-online-users-list</node></command>")
    values = [v.text for f in xml(answer.text).find("fields") if f.findtext("var") == "onlineuserjids"
              for v in f.find("value").findall("item")]
    assert "bob@localhost" in values


async def test_reference_online_users_example_is_refused_by_ejabberd(component):
    # The reference example submits domainjid and max_items: ejabberd's command takes no form
    # and answers service-unavailable (no text). Send only the node instead.
    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML, body=f"""<command>
  <node>{ADMIN_NS}get-online-users-list</node>
  <fields>
    <item><var>domainjid</var><value>localhost</value></item>
    <item><var>max_items</var><value>25</value></item>
  </fields>
</command>""")
    assert answer.status == 503
    assert "localhost answered with XMPP error service-unavailable" in answer.text


@pytest.mark.parametrize("notation", ["xml", "json"])
async def test_end_user_session_with_accountjid_disconnects_the_client(component, xmpp_client, notation):
    bob = await xmpp_client("bob", resource="to-kick")
    gone = asyncio.Event()
    bob.xmpp.add_event_handler("disconnected", lambda _: gone.set())
    if notation == "xml":
        answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML, body=f"""<command>
  <node>{ADMIN_NS}end-user-session</node>
  <fields>
    <item>
      <var>accountjid</var>
      <value>bob@localhost</value>
    </item>
  </fields>
</command>""")
        status = xml(answer.text).findtext("status")
    else:
        answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
            "node": ADMIN_NS + "end-user-session", "fields": [{"var": "accountjid", "value": "bob@localhost"}]}})
        status = answer.json()["command"]["status"]
    assert (answer.status, status) == (200, "completed")
    await asyncio.wait_for(gone.wait(), 5)


async def test_end_user_session_with_prosodys_field_name_is_404(component, xmpp_client):
    bob = await xmpp_client("bob", resource="stays")
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "end-user-session", "fields": [{"var": "accountjids", "value": ["bob@localhost"]}]}})
    assert (answer.status, answer.json()["error"]["condition"]) == (404, "item-not-found")
    assert bob.xmpp.transport is not None  # still connected


async def test_xmpp_errors_become_http_statuses(component):
    # ejabberd: item-not-found for an unknown node (Prosody: service-unavailable)
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": "no-such-command"}})
    error = answer.json()["error"]
    assert (answer.status, error["condition"]) == (404, "item-not-found")
    assert error["reason"] == "localhost answered with XMPP error item-not-found: No hook has processed this command"

    answer = await call(component, "GET", "/rest/adhoc/nobody@localhost/gone?type=application/json")
    error = answer.json()["error"]
    assert (answer.status, error["condition"], error["text"]) == (503, "service-unavailable", "User session not found")


async def test_component_command_reached_through_ejabberd(component):
    # admin's c2s session -> ejabberd -> the component's own XEP-0050 command, and back
    answer = await call(component, "GET", "/rest/adhoc/http.localhost?type=application/json")
    assert {"jid": "http.localhost", "node": "reload-handlers",
            "name": "Reload REST HTTP script handlers"} in answer.json()["items"]
    answer = await call(component, "POST", "/rest/adhoc/http.localhost", body={"command": {"node": "reload-handlers"}})
    result = answer.json()["command"]
    assert (answer.status, result["status"]) == (200, "completed") and "reloaded" in result["note"]["value"]
    answer = await call(component, "POST", "/rest/adhoc/http.localhost", auth=ALICE,
                        body={"command": {"node": "reload-handlers"}})
    assert answer.status == 403
    assert "not an admin" in answer.json()["error"]["text"]


# --- the server goes away -----------------------------------------------------------------------


async def test_ejabberd_down_gives_503_then_the_component_reconnects(ejabberd, component, xmpp_client):
    ping = '<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>'
    assert (await post_stanza(component, ping)).status == 200  # logs the admin in while the server is up
    ejabberd.kill()
    try:
        answer = await post_stanza(component, ping)
        assert answer.status == 503
        assert answer.headers["Retry-After"].isdigit() and "link is down" in answer.text
        status, report = await health(component)
        assert (status, report["xmpp_link"]) == (503, "down")
    finally:
        await asyncio.to_thread(ejabberd.start)  # same ports; users are kept (or restored)
    deadline = time.monotonic() + 20
    while (answer := await post_stanza(component, ping)).status != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)  # the component reconnects on its own, with backoff
    assert answer.status == 200
    bob = await xmpp_client("bob", resource="after-restart")
    # 'from' set explicitly: this test is about the reconnect, not about stanzas without 'from'
    answer = await post_stanza(component, '<message from="http.localhost" to="bob@localhost/after-restart">'
                                          '<body>back</body></message>')
    assert answer.status == 200
    assert (await received(bob, component))["body"] == "back"
    assert component.process.poll() is None  # never restarted
