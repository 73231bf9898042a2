"""/rest/adhoc against a real server: the reference examples (2.2.2-2.2.5) in XML and JSON,
adapted only where Prosody names things differently (commands at ``localhost`` instead of
``sess-man@localhost``; ``get-online-users-list`` for ``get-active-users``), admin and user rights,
multi-stage commands, and the component's own commands.

The tests marked portable hold on Prosody and ejabberd, with what differs read from the server
object (``xmpp_server``); the unmarked ones are Prosody's (ejabberd's counterparts: test_ejabberd.py)."""

from __future__ import annotations

import asyncio
import uuid
from xml.etree import ElementTree

import pytest

from clients import connect_client
from rest import ADMIN, ALICE, basic, call
from tigase_entities import INSTRUCTIONS, serve_vhost_man

ADMIN_NS = "http://jabber.org/protocol/admin#"
XML = {"Content-Type": "application/xml"}


def xml(text):
    return ElementTree.fromstring(text)


@pytest.mark.portable
async def test_admin_lists_admin_commands_in_xml_and_json(component, xmpp_server):
    answer = await call(component, "GET", "/rest/adhoc/localhost")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
    root = xml(answer.text)
    assert root.tag == "items"
    nodes = {item.findtext("node"): item for item in root.findall("item")}
    for command in ("add-user", "end-user-session", "get-online-users-list", "delete-user",
                    "change-user-password"):
        assert ADMIN_NS + command in nodes
    assert (ADMIN_NS + "get-user-roster" in nodes) == xmpp_server.admin_get_user_roster
    assert len([node for node in nodes if node.startswith(ADMIN_NS)]) == xmpp_server.admin_command_count
    assert nodes[ADMIN_NS + "add-user"].findtext("jid") == "localhost"
    assert nodes[ADMIN_NS + "add-user"].findtext("name")

    answer = await call(component, "GET", "/rest/adhoc/localhost", headers={"Content-Type": "application/json"})
    items = answer.json()["items"]
    assert {"jid": "localhost", "node": ADMIN_NS + "end-user-session", "name": "End User Session"} in items


@pytest.mark.portable
async def test_user_sees_only_user_commands_and_gets_403_with_the_reason(component, xmpp_server):
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ALICE)
    assert answer.status == 200
    assert [item["node"] for item in answer.json()["items"]] == list(xmpp_server.user_commands)
    for node in xmpp_server.user_commands:  # and can run them
        answer = await call(component, "POST", "/rest/adhoc/localhost", auth=ALICE, body={"command": {"node": node}})
        done = answer.json()["command"]
        assert (answer.status, done["status"]) == (200, "completed") and done["note"]["value"]

    answer = await call(component, "POST", "/rest/adhoc/localhost", auth=ALICE, body={
        "command": {"node": ADMIN_NS + "get-online-users-list", "fields": [{"var": "max_items", "value": "25"}]}})
    assert answer.status == 403
    error = answer.json()["error"]
    assert error["condition"] == "forbidden"
    assert error["text"] == xmpp_server.forbidden_command_text


async def test_retrieving_a_command_form_xml_and_json(component):
    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML,
                        body=f"<command><node>{ADMIN_NS}add-user</node></command>")
    assert answer.status == 200
    command = xml(answer.text)
    assert command.findtext("jid") == "localhost"
    assert command.findtext("node") == ADMIN_NS + "add-user"
    assert command.findtext("status") == "executing"
    fields = {f.findtext("var"): f for f in command.find("fields")}
    assert fields["accountjid"].findtext("type") == "jid-single"
    assert fields["password"].findtext("type") == "text-private"

    answer = await call(component, "POST", "/rest/adhoc/localhost",
                        body={"command": {"node": ADMIN_NS + "add-user"}})
    form = answer.json()["command"]
    assert form["type"] == "form" and form["title"] == "Adding a User" and form["sessionid"]
    assert {"var": "accountjid", "label": "The Jabber ID for the account to be added", "type": "jid-single",
            "value": None, "required": True} in form["fields"]


@pytest.mark.portable
async def test_admin_adds_a_user_who_can_then_log_in(component, xmpp_server):
    name = "new-" + uuid.uuid4().hex[:8]
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user",
        "fields": [{"var": "accountjid", "value": f"{name}@localhost"},
                   {"var": "password", "value": "s3cret-0"},
                   {"var": "password-verify", "value": "s3cret-0"}]}})
    assert answer.status == 200
    result = answer.json()["command"]
    assert result["status"] == "completed"
    if xmpp_server.add_user_note:
        assert "successfully" in result["note"]["value"].lower()
    else:  # ejabberd confirms with an empty <command/>
        assert "note" not in result and result["fields"] == []
    # the new account logs in: over the REST API itself (a normal user) and with a real client
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json",
                        auth=basic(f"{name}@localhost", "s3cret-0"))
    assert answer.status == 200
    assert [item["node"] for item in answer.json()["items"]] == list(xmpp_server.user_commands)
    client = await connect_client(f"{name}@localhost", "s3cret-0", "127.0.0.1", xmpp_server.c2s_port)
    await client.disconnect()


@pytest.mark.portable
async def test_multi_stage_command_driven_with_sessionid_and_action(component):
    name = "staged-" + uuid.uuid4().hex[:8]
    first = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": ADMIN_NS + "add-user"}})
    stage = first.json()["command"]
    assert stage["status"] == "executing" and "complete" in stage["actions"]
    second = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "sessionid": stage["sessionid"], "action": "complete",
        "fields": [{"var": "accountjid", "value": f"{name}@localhost"},
                   {"var": "password", "value": "pw"}, {"var": "password-verify", "value": "pw"}]}})
    done = second.json()["command"]
    assert (second.status, done["status"], done["sessionid"]) == (200, "completed", stage["sessionid"])
    answer = await call(component, "GET", "/rest/adhoc/localhost", auth=basic(f"{name}@localhost", "pw"))
    assert answer.status == 200  # the account exists

    # cancel: a started session can be abandoned explicitly
    first = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": ADMIN_NS + "add-user"}})
    cancel = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "sessionid": first.json()["command"]["sessionid"], "action": "cancel"}})
    assert cancel.json()["command"]["status"] == "canceled"


ACTIVE_USERS_XML = f"""<command>
  <node>{ADMIN_NS}get-online-users-list</node>
  <fields>
    <item>
      <var>domainjid</var>
      <value>localhost</value>
    </item>
    <item>
      <var>max_items</var>
      <value>25</value>
    </item>
  </fields>
</command>"""


async def test_list_online_users_xml_and_json(component, xmpp_client):
    await xmpp_client("bob", resource="online")
    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML, body=ACTIVE_USERS_XML)
    assert answer.status == 200
    users = xml(answer.text).find("fields")
    values = [v.text for f in users for v in f.find("value").findall("item")]
    assert "bob@localhost" in values

    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "get-online-users-list",
        "fields": [{"var": "domainjid", "value": "localhost"}, {"var": "max_items", "value": "25"}]}})
    fields = answer.json()["command"]["fields"]
    online = next(f for f in fields if f["type"] == "text-multi")
    assert "bob@localhost" in online["value"]


@pytest.mark.parametrize("notation", ["xml", "json"])
async def test_end_user_session_disconnects_the_client(component, xmpp_client, notation):
    bob = await xmpp_client("bob", resource="to-kick")
    gone = asyncio.Event()
    bob.xmpp.add_event_handler("disconnected", lambda _: gone.set())
    if notation == "xml":
        answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML, body=f"""<command>
  <node>{ADMIN_NS}end-user-session</node>
  <fields>
    <item>
      <var>accountjids</var>
      <value>
        <item>bob@localhost</item>
      </value>
    </item>
  </fields>
</command>""")
        note = xml(answer.text).find("note").findtext("value")
    else:
        answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
            "node": ADMIN_NS + "end-user-session", "fields": [{"var": "accountjids", "value": ["bob@localhost"]}]}})
        note = answer.json()["command"]["note"]["value"]
    assert answer.status == 200
    assert "bob@localhost" in note
    await asyncio.wait_for(gone.wait(), 5)


@pytest.mark.portable
async def test_xmpp_errors_become_http_statuses(component, xmpp_server):
    # An unknown command node: Prosody says service-unavailable, ejabberd item-not-found (Tigase: 404, no detail)
    status, condition = xmpp_server.unknown_command_error
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": "no-such-command"}})
    assert answer.status == status
    assert answer.json()["error"]["condition"] == condition
    assert f"localhost answered with XMPP error {condition}" in answer.json()["error"]["reason"]
    answer = await call(component, "GET", "/rest/adhoc/nobody@localhost/gone?type=application/json")
    assert answer.status == 503
    assert answer.json()["error"]["condition"] == "service-unavailable"
    answer = await call(component, "GET", "/rest/adhoc/not@valid@jid")
    assert answer.status == 404  # does not match the route: not a JID path


@pytest.mark.portable
@pytest.mark.parametrize("body, reason", [
    ({"command": {}}, "has no 'node'"),
    ({"command": {"node": "x", "fields": "oops"}}, "'fields' must be a list"),
    ({"command": {"node": "x", "fields": [{"var": "a", "value": {"nested": 1}}]}}, "fields[0] (a).value"),
    ({"command": {"node": "x", "action": "jump"}}, "'action' must be one of"),
    (["not", "an", "object"], "must be an object"),
])
async def test_malformed_command_bodies_are_400(component, body, reason):
    answer = await call(component, "POST", "/rest/adhoc/localhost", body=body)
    assert answer.status == 400
    assert reason in answer.json()["error"]["reason"]


@pytest.mark.portable
async def test_component_offers_reload_handlers_to_admins_only(component):
    answer = await call(component, "GET", "/rest/adhoc/http.localhost?type=application/json")
    assert {"jid": "http.localhost", "node": "reload-handlers",
            "name": "Reload REST HTTP script handlers"} in answer.json()["items"]
    answer = await call(component, "POST", "/rest/adhoc/http.localhost", body={"command": {"node": "reload-handlers"}})
    result = answer.json()["command"]
    assert result["status"] == "completed" and "reloaded" in result["note"]["value"]
    assert "Loaded" in component.log_text()
    answer = await call(component, "POST", "/rest/adhoc/http.localhost", auth=ALICE,
                        body={"command": {"node": "reload-handlers"}})
    assert answer.status == 403
    assert "not an admin" in answer.json()["error"]["text"]


@pytest.fixture
async def vhost_man(xmpp_server, xmpp_client):
    """vhost-man@localhost/tigase: a client on the real server answering as Tigase's vhost-man."""
    xmpp_server.register("vhost-man", "vhostpass")
    client = await xmpp_client("vhost-man", resource="tigase")
    for plugin in ("xep_0030", "xep_0004", "xep_0050"):
        client.xmpp.register_plugin(plugin)
    vhosts: dict[str, dict] = {"existing.example": {}}
    serve_vhost_man(client.xmpp, vhosts)
    return vhosts


VHOST_URL = "/rest/adhoc/vhost-man@localhost/tigase"


@pytest.mark.portable
async def test_vhost_form_then_add_with_command_marker_xml(component, vhost_man):
    answer = await call(component, "POST", VHOST_URL, headers=XML,
                        body="<command><node>comp-repo-item-add</node></command>")
    command = xml(answer.text)
    assert command.findtext("jid") == "vhost-man@localhost/tigase"
    fields = {f.findtext("var"): f for f in command.find("fields")}
    # passed through as the entity sent it: slixmpp writes XEP-0004 booleans as "1", Tigase as "true"
    assert fields["Enabled"].findtext("type") == "boolean" and fields["Enabled"].findtext("value") == "1"
    assert "vhost-tls-required" in fields["TLS"].findtext("value")  # unescaped, unlike Tigase's &amp;apos;
    assert command.findtext("instructions") == INSTRUCTIONS

    answer = await call(component, "POST", VHOST_URL, headers=XML, body="""<command>
    <jid>vhost-man@domain.com</jid>
    <node>comp-repo-item-add</node>
    <fields>
        <item>
            <var>Domain name</var>
            <value>my-new-domain.com</value>
        </item>
        <item>
            <var>Enabled</var>
            <value>true</value>
        </item>
        <item>
            <var>command-marker</var>
            <value>command-marker</value>
        </item>
    </fields>
</command>""")
    fields = xml(answer.text).find("fields")
    note = fields.find("item")
    assert (note.findtext("var"), note.findtext("type"), note.findtext("value")) == (
        "Note", "fixed", "Operation successful.")
    assert vhost_man["my-new-domain.com"]["Enabled"] in (True, "true", "1")


@pytest.mark.portable
async def test_vhost_add_without_marker_returns_the_form_and_update_json(component, vhost_man):
    answer = await call(component, "POST", VHOST_URL, body={"command": {
        "node": "comp-repo-item-add", "fields": [{"var": "Domain name", "value": "forgot-marker.com"}]}})
    assert "forgot-marker.com" not in vhost_man
    assert any(f["var"] == "command-marker" for f in answer.json()["command"]["fields"])

    answer = await call(component, "POST", VHOST_URL, body={"command": {
        "jid": "vhost-man@domain.com", "node": "comp-repo-item-update",
        "fields": [{"var": "Domain name", "value": "existing.example"}, {"var": "Enabled", "value": "true"},
                   {"var": "command-marker", "value": "command-marker"},
                   {"var": "item-list", "value": "existing.example"}]}})
    assert answer.json() == {"command": {
        "jid": "vhost-man@localhost/tigase", "node": "comp-repo-item-update",
        "fields": [{"var": "Note", "type": "fixed", "value": "Operation successful."}],
        "sessionid": answer.json()["command"]["sessionid"], "status": "completed", "type": "result"}}
    assert vhost_man["existing.example"]["item-list"] == "existing.example"
