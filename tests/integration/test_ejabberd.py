"""What only ejabberd 23.01 does: /rest/adhoc flows where ejabberd's commands differ in shape from
Prosody's (their Prosody counterparts are in test_adhoc.py). Every flow that holds on both servers
is a portable test elsewhere in this folder. Run with ``make test-ejabberd``
(``--xmpp-server=ejabberd``); deselected on any other server.

Each difference here is one a user of the REST API sees (README).
"""

from __future__ import annotations

import asyncio
import uuid
from xml.etree import ElementTree

import pytest

from rest import call

pytestmark = pytest.mark.only_on("ejabberd")

ADMIN_NS = "http://jabber.org/protocol/admin#"
XML = {"Content-Type": "application/xml"}


def xml(text):
    return ElementTree.fromstring(text)


async def test_add_user_form_has_password_verify(component):
    answer = await call(component, "POST", "/rest/adhoc/localhost", headers=XML,
                        body=f"<command><node>{ADMIN_NS}add-user</node></command>")
    command = xml(answer.text)
    assert (answer.status, command.findtext("status")) == (200, "executing")
    fields = {f.findtext("var"): f.findtext("type") for f in command.find("fields")}
    assert fields == {"FORM_TYPE": "hidden", "accountjid": "jid-single", "password": "text-private",
                      "password-verify": "text-private"}

    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {"node": ADMIN_NS + "add-user"}})
    stage = answer.json()["command"]
    assert (stage["actions"], stage["default_action"], stage["title"]) == (["complete"], "complete", "Add User")


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
