"""Every example request of the reference documentation (reference/tigase-rest-api.rst), verbatim,
against a real server with ``[http] tigase_compat = true``: the status and the shape each example's
answer shows. Only what names the server changes: the domains (``domain.com``, ``example.com``,
``domain``) become the test server's ``localhost``, and the BOSH example's ``user_jid`` is alice,
who pre-binds herself (no server lets an admin log in as another user; test_bosh_prebind.py).
Values that depend on the server (who is online, rid, sid) are compared by shape.

Where the reference's answer cannot be had from Prosody or ejabberd, the test asserts our answer:
the VHost commands (comp-repo-item-*) are Tigase's own, 501 at ``vhost-man@localhost`` (the same
bodies then run against a Tigase-like vhost-man entity and give the reference's answer); the BOSH
JSON example is not JSON (``"pre-bind-bosh-session""``): 400, then the corrected body works.

Examples (21 requests): avatar 1, command list 2, command form 2, active users 2, end user session
2 (each connected and not), VHosts 4, stanzas 3, user status 2, BOSH 2 (+ the corrected JSON).
All 21 run on Prosody; on ejabberd (``portable``) all but user status and BOSH (Prosody's features
here: mod_privilege's roster, its BOSH URL), 17.
"""

from __future__ import annotations

import asyncio
import json
import re
from xml.etree import ElementTree

import pytest

from rest import ALICE, call
from test_adhoc import vhost_man  # noqa: F401 (the fixture: a Tigase-like vhost-man@localhost/tigase)

ADMIN_NS = "http://jabber.org/protocol/admin#"
ACTIVE = ADMIN_NS + "get-active-users"
END = ADMIN_NS + "end-user-session"


def here(text: str) -> str:
    """An example with its domains replaced by the test server's."""
    return re.sub(r"\b(domain\.com|example\.com|domain)\b", "localhost", text)


@pytest.fixture
def compat(component_factory):
    return component_factory(http={"tigase_compat": True})


def xml(answer):
    assert answer.status == 200, answer.text
    return ElementTree.fromstring(answer.text)


def items_of(fields):
    """An XML ``<fields>`` as [(var, label, type, [values])]."""
    return [(f.findtext("var"), f.findtext("label"), f.findtext("type"), [v.text for v in f.findall("value")])
            for f in fields.findall("item")]


# --- 2.2.1 avatar -----------------------------------------------------------------------------------

@pytest.mark.portable
async def test_2_2_1_avatar_of_a_user_without_one_is_404(compat):
    answer = await call(compat, "GET", here("/rest/avatar/admin@domain.com"), auth=None)
    assert answer.status == 404


# --- 2.2.2 the commands of sess-man ------------------------------------------------------------------

@pytest.mark.portable
async def test_2_2_2_sess_man_lists_the_servers_commands_under_tigase_names(compat):
    items = xml(await call(compat, "GET", here("/rest/adhoc/sess-man@domain.com")))
    assert items.tag == "items"
    listed = [(i.findtext("jid"), i.findtext("node"), i.findtext("name")) for i in items.findall("item")]
    assert listed[0] == ("sess-man@localhost", ACTIVE, "Get list of active users")
    assert all(jid == "sess-man@localhost" and node and name for jid, node, name in listed)
    assert ADMIN_NS + "end-user-session" in [node for _, node, _ in listed]

    for headers, query in (({"Content-Type": "application/json"}, ""), ({}, "?type=application/json")):
        answer = await call(compat, "GET", here("/rest/adhoc/sess-man@domain.com") + query, headers=headers)
        data = answer.json()
        assert list(data) == ["items"]
        assert data["items"][0] == {"jid": "sess-man@localhost", "node": ACTIVE, "name": "Get list of active users"}
        assert all(set(item) == {"jid", "node", "name"} for item in data["items"])


# --- 2.2.3 a command's form: vhost-man --------------------------------------------------------------

FORM_XML = """<command>
    <node>comp-repo-item-add</node>
</command>"""

FORM_JSON = """{
  "command": {
    "node" : "comp-repo-item-add"
  }
}"""


@pytest.mark.portable
@pytest.mark.parametrize("body, content_type", [(FORM_XML, "application/xml"), (FORM_JSON, "application/json")])
async def test_2_2_3_vhost_form_is_501_the_server_has_no_vhost_commands(compat, body, content_type):
    answer = await call(compat, "POST", here("/rest/adhoc/vhost-man@domain.com"), body=body,
                        headers={"Content-Type": content_type, "Accept": "application/json"})
    assert answer.status == 501
    assert "comp-repo-item-add (adding a virtual host) is Tigase's own" in answer.text


# --- 2.2.4 get-active-users --------------------------------------------------------------------------

ACTIVE_XML = """<command>
  <node>http://jabber.org/protocol/admin#get-active-users</node>
  <fields>
    <item>
      <var>domainjid</var>
      <value>domain.com</value>
    </item>
    <item>
      <var>max_items</var>
      <value>25</value>
    </item>
  </fields>
</command>"""

ACTIVE_JSON = """{
  "command" : {
    "node" : "http://jabber.org/protocol/admin#get-active-users",
    "fields" : [
      {
        "var" : "domainjid",
        "value" : "domain.com"
      },
      {
        "var" : "max_items",
        "value" : "25"
      }
    ]
  }
}"""


@pytest.mark.portable
async def test_2_2_4_active_users_xml_and_json(compat, xmpp_client):
    await xmpp_client("test", resource="online")
    answer = await call(compat, "POST", here("/rest/adhoc/sess-man@domain.com"), body=here(ACTIVE_XML),
                        headers={"Content-Type": "text/xml"})
    command = xml(answer)
    assert [c.tag for c in command] == ["jid", "node", "fields"]
    assert (command.findtext("jid"), command.findtext("node")) == ("sess-man@localhost", ACTIVE)
    [(var, label, kind, values)] = items_of(command.find("fields"))
    # admin's own session (the REST call's) is online too, as in the reference's answer
    assert {"admin@localhost", "test@localhost"} <= set(values)
    assert (var, label, kind) == (f"Users: {len(values)}", "text-multi", None)

    answer = await call(compat, "POST", here("/rest/adhoc/sess-man@domain.com"), body=here(ACTIVE_JSON),
                        headers={"Content-Type": "application/json"})
    assert answer.status == 200, answer.text
    [field] = answer.json()["command"]["fields"]
    assert answer.json() == {"command": {"jid": "sess-man@localhost", "node": ACTIVE, "fields": [
        {"var": f"Users: {len(field['value'])}", "label": "text-multi", "value": field["value"]}]}}
    assert {"admin@localhost", "test@localhost"} <= set(field["value"])


# --- 2.2.4 end-user-session -------------------------------------------------------------------------

END_XML = """<command>
  <node>http://jabber.org/protocol/admin#end-user-session</node>
  <fields>
    <item>
      <var>accountjids</var>
      <value>
        <item>test@domain.com</item>
      </value>
    </item>
  </fields>
</command>"""

END_JSON = """{
  "command" : {
    "node": "http://jabber.org/protocol/admin#end-user-session",
    "fields": [
        {
            "var" : "accountjids",
            "value" : [
                "test@domain.com"
            ]
        }
    ]
  }
}"""


@pytest.mark.portable
@pytest.mark.parametrize("body, content_type", [(END_XML, "application/xml"), (END_JSON, "application/json")])
async def test_2_2_4_end_user_session_connected_then_not(compat, xmpp_client, body, content_type):
    test = await xmpp_client("test", resource="resource")
    gone = asyncio.Event()
    test.xmpp.add_event_handler("disconnected", lambda _: gone.set())
    url, headers = here("/rest/adhoc/sess-man@domain.com"), {"Content-Type": content_type}
    answer = await call(compat, "POST", url, body=here(body), headers=headers)
    assert answer.status == 200, answer.text
    if content_type == "application/xml":
        command = ElementTree.fromstring(answer.text)
        assert (command.findtext("jid"), command.findtext("node")) == ("sess-man@localhost", END)
        assert items_of(command.find("fields")) == [
            ("Notes", None, "text-multi", ["Operation successful for user test@localhost"])]
    else:
        assert answer.json() == {"command": {"jid": "sess-man@localhost", "node": END, "fields": [
            {"var": "Notes", "type": "text-multi", "value": ["Operation successful for user test@localhost"]}]}}
    await asyncio.wait_for(gone.wait(), 5)

    # "If the user was not connected server will return following response"
    answer = await call(compat, "POST", url, body=here(body), headers=headers)
    assert answer.status == 200, answer.text
    if content_type == "application/xml":
        command = ElementTree.fromstring(answer.text)
        assert [(c.tag, len(c)) for c in command][2] == ("fields", 0)
    else:
        assert answer.json() == {"command": {"jid": "sess-man@localhost", "node": END, "fields": []}}


# --- 2.2.5 VHosts -----------------------------------------------------------------------------------

ADD_XML = """<command>
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
</command>"""

ADD_JSON = """{
  "command": {
    "jid": "vhost-man@domain.com",
    "node": "comp-repo-item-add",
    "fields": [
      {
        "var": "Domain name",
        "value": "my-new-awesome-domain.com"
      },
      {
        "var": "Enabled",
        "value": "true"
      },
      {
        "var": "command-marker",
        "value": "command-marker"
      }
    ]
  }
}"""

UPDATE_XML = """<command>
    <jid>vhost-man@domain.com</jid>
    <node>comp-repo-item-update</node>
    <fields>
        <item>
            <var>Domain name</var>
            <value>my-vhost.com</value>
        </item>
        <item>
            <var>Enabled</var>
            <value>true</value>
        </item>
        <item>
            <var>command-marker</var>
            <value>command-marker</value>
        </item>
        <item>
            <var>item-list</var>
            <value>my-vhost.com</value>
        </item>
    </fields>
</command>"""

UPDATE_JSON = """{
  "command": {
    "jid": "vhost-man@domain.com",
    "node": "comp-repo-item-update",
    "fields": [
      {
        "var": "Domain name",
        "value": "my-domain.com"
      },
      {
        "var": "Enabled",
        "value": "true"
      },
      {
        "var": "command-marker",
        "value": "command-marker"
      },
      {
        "var": "item-list",
        "value": "my-domain.com"
      }
    ]
  }
}"""


@pytest.mark.portable
@pytest.mark.parametrize("body, content_type", [
    (ADD_XML, "application/xml"), (ADD_JSON, "application/json"),
    (UPDATE_XML, "application/xml"), (UPDATE_JSON, "application/json"),
], ids=["add-xml", "add-json", "update-xml", "update-json"])
async def test_2_2_5_vhost_commands_501_here_and_tigase_s_answer_from_a_tigase_entity(
        compat, vhost_man, body, content_type):  # noqa: F811
    node = re.search(r"comp-repo-item-\w+", body).group()
    answer = await call(compat, "POST", here("/rest/adhoc/vhost-man@domain.com"), body=body,
                        headers={"Content-Type": content_type})
    assert answer.status == 501
    assert "is Tigase's own" in answer.text

    # The same body to an entity answering as Tigase's vhost-man: the reference's answer exactly.
    answer = await call(compat, "POST", "/rest/adhoc/vhost-man@localhost/tigase", body=body,
                        headers={"Content-Type": content_type})
    jid = "vhost-man@localhost/tigase"
    if content_type == "application/xml":
        command = xml(answer)
        assert [c.tag for c in command] == ["jid", "node", "fields"]
        assert (command.findtext("jid"), command.findtext("node")) == (jid, node)
        assert items_of(command.find("fields")) == [("Note", None, "fixed", ["Operation successful."])]
    else:
        assert answer.json() == {"command": {"jid": jid, "node": node, "fields": [
            {"var": "Note", "type": "fixed", "value": "Operation successful."}]}}
    assert re.search(r"<var>Domain name</var>\s*<value>([^<]+)<|\"value\": \"(my-[^\"]+)\"", body)
    name = json.loads(body)["command"]["fields"][0]["value"] if body.startswith("{") else \
        ElementTree.fromstring(body).find("fields/item/value").text
    assert name in vhost_man  # the entity ran the command


# --- 2.2.6 stanzas ----------------------------------------------------------------------------------

STANZAS = [
    ("""<message xmlns="jabber:client" type="chat" to="test@example.com/resource-1">
    <body>Example message 1</body>
</message>""", "http.localhost", "Example message 1"),
    ("""<message xmlns="jabber:client" type="chat" to="test@example.com">
    <body>Example message 2</body>
</message>""", "http.localhost", "Example message 2"),
    ("""<message xmlns="jabber:client" type="chat" from="sender@example.com" to="test@example.com/resource-1">
    <body>Example message 1</body>
</message>""", "sender@localhost", "Example message 1"),
]


@pytest.mark.portable
@pytest.mark.parametrize("stanza, sender, text", STANZAS, ids=["full-jid", "bare-jid", "with-from"])
async def test_2_2_6_stanzas_reach_the_client(compat, xmpp_client, stanza, sender, text):
    test = await xmpp_client("test", resource="resource-1")
    answer = await call(compat, "POST", "/rest/stream/?api-key=test-key", body=here(stanza),
                        headers={"Content-Type": "application/xml", "Api-Key": None})
    assert (answer.status, answer.text) == (200, "")
    message = await test.next_message()
    assert (message["body"], message["from"].bare) == (text, sender)


# --- 2.2.7 user status ------------------------------------------------------------------------------

STATUS_XML = """<command>
    <available>true</available>
    <priority>-1</priority>
    <show>xa</show>
    <status>On the phone</status>
</command>"""

STATUS_JSON = """{
  "available": "true",
  "priority": "-1",
  "show": "xa",
  "status": "On the phone"
}"""


@pytest.mark.parametrize("body, content_type", [(STATUS_XML, "application/xml"), (STATUS_JSON, "application/json")])
async def test_2_2_7_user_status(compat, body, content_type):
    answer = await call(compat, "POST", "/rest/user/test@localhost/status?api-key=test-key", body=body, auth=None,
                        headers={"Content-Type": content_type, "Api-Key": None})
    assert answer.status == 200, answer.text
    expected = {"user": "test@localhost/tigase-external", "available": "true", "priority": "-1", "show": "xa",
                "status": "On the phone", "success": True}
    if content_type == "application/json":
        assert answer.json() == {"status": expected}
    else:
        status = ElementTree.fromstring(answer.text)
        assert status.tag == "status"
        assert {c.tag: c.text for c in status} == {**expected, "success": "true"}
    withdraw = await call(compat, "POST", "/rest/user/test@localhost/status", auth=None,
                          body={"available": "false"})
    assert withdraw.status == 200


# --- 2.3 BOSH pre-binding ---------------------------------------------------------------------------

PREBIND_XML = """<command>
  <node>pre-bind-bosh-session</node>
  <fields>
    <item>
      <var>from</var>
      <value>user_jid@domain/resource</value>
    </item>
    <item>
      <var>hold</var>
      <value>1</value>
    </item>
    <item>
      <var>wait</var>
      <value>60</value>
    </item>
  </fields>
</command>"""

PREBIND_JSON = """{
  "command" : {
    "node" : "pre-bind-bosh-session"",
    "fields" : [
      {
        "var" : "from",
        "value" : "user_jid@domain/resource"
      },
      {
        "var" : "hold",
        "value" : "1"
      },
      {
        "var" : "wait",
        "value" : "60"
      }
    ]
  }
}"""

PREBIND_FIELDS = [("from", "jid-single"), ("hostname", "jid-single"), ("rid", "text-single"),
                  ("sid", "text-single"), ("hold", "text-single"), ("wait", "text-single")]


def as_alice(text):
    return here(text.replace("user_jid@", "alice@"))


async def test_2_3_bosh_prebind_xml_as_the_curl_line_sends_it(compat):
    # curl -X POST -d @prebind http://admin%40domain:pass@domain:8080/rest/adhoc/bosh@domain --header "Content-Type:text/xml"
    answer = await call(compat, "POST", here("/rest/adhoc/bosh@domain"), body=as_alice(PREBIND_XML), auth=ALICE,
                        headers={"Content-Type": "text/xml"})
    command = xml(answer)
    assert [c.tag for c in command] == ["jid", "node", "fields"]
    assert (command.findtext("jid"), command.findtext("node")) == ("bosh@localhost", "pre-bind-bosh-session")
    fields = items_of(command.find("fields"))
    assert [(var, label) for var, label, _, _ in fields] == PREBIND_FIELDS
    assert all(kind is None and len(values) == 1 for _, _, kind, values in fields)
    values = {var: values[0] for var, _, _, values in fields}
    assert values["from"] == "alice@localhost/resource" and (values["hold"], values["wait"]) == ("1", "60")
    assert values["rid"].isdigit() and values["sid"]


async def test_2_3_bosh_prebind_json_the_reference_body_is_not_json_corrected_it_works(compat):
    url, headers = here("/rest/adhoc/bosh@domain.com"), {"Content-Type": "application/json"}
    answer = await call(compat, "POST", url, body=as_alice(PREBIND_JSON), auth=ALICE, headers=headers)
    assert answer.status == 400 and "Malformed JSON" in answer.text
    fixed = as_alice(PREBIND_JSON).replace('"pre-bind-bosh-session""', '"pre-bind-bosh-session"')
    answer = await call(compat, "POST", url, body=fixed, auth=ALICE, headers=headers)
    assert answer.status == 200, answer.text
    command = answer.json()["command"]
    assert list(command) == ["jid", "node", "fields"]
    assert [(f["var"], f["label"]) for f in command["fields"]] == PREBIND_FIELDS
    assert all(set(f) == {"var", "label", "value"} for f in command["fields"])
