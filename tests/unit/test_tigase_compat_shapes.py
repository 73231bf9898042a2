"""http.tigase_compat: Tigase's answer shapes and the sess-man@/vhost-man@ routing, XML in / data out."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree

import pytest

from tigase_rest.coding import JSON, XML, RepeatedElements, encode
from tigase_rest.errors import HttpError
from tigase_rest.xmpp import tigase_compat
from tigase_rest.xmpp.forms import command_result, tigase_shape

C = "http://jabber.org/protocol/commands"
D = "jabber:x:data"


def reply(inner: str) -> ElementTree.Element:
    return ElementTree.fromstring(f"<iq xmlns='jabber:client' type='result'>{inner}</iq>")


MULTI = reply(f"""<command xmlns='{C}' node='n' status='completed' sessionid='s1'>
  <x xmlns='{D}' type='result'>
    <field var='jids' type='text-multi' label='Online'><value>a@d</value><value>b@d</value></field>
    <field var='one' type='jid-single' label='One'><value>c@d</value><required/><desc>d</desc></field>
  </x></command>""")


def test_default_shape_is_unchanged_and_compat_drops_our_additions():
    ours = command_result("d", "n", MULTI)["command"]
    assert {"sessionid", "status", "type"} <= set(ours)
    tigase = tigase_shape(command_result("d", "n", MULTI))
    assert tigase == {"command": {"jid": "d", "node": "n", "fields": [
        {"var": "jids", "label": "Online", "type": "text-multi", "value": ["a@d", "b@d"]},
        {"var": "one", "label": "One", "type": "jid-single", "value": "c@d"}]}}
    assert "<value>a@d</value><value>b@d</value>" in encode(tigase, XML)
    assert '"value": [' in encode(tigase, JSON)
    assert encode(command_result("d", "n", MULTI), XML).count("<value><item>a@d</item>") == 1


def test_type_in_label_as_tigase_s_own_commands_send_it():
    shaped = tigase_shape(command_result("d", "n", MULTI), type_in_label=True)
    assert shaped["command"]["fields"][1] == {"var": "one", "label": "jid-single", "value": "c@d"}


def test_repeated_elements_in_xml_only():
    data = {"f": {"value": RepeatedElements(["1", "2"]), "empty": RepeatedElements()}}
    assert encode(data, XML) == "<f><value>1</value><value>2</value><empty/></f>"


@pytest.mark.parametrize("jid, alias", [
    ("sess-man@example.com", ("sess-man", "example.com")), ("vhost-man@example.com", ("vhost-man", "example.com")),
    ("sess-man@example.com/r", None), ("bob@example.com", None), ("example.com", None)])
def test_alias_of(jid, alias):
    assert tigase_compat.alias_of(jid) == alias


def test_commands_list_names_the_mapped_commands_as_tigase_does():
    disco = reply("<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'>"
                  "<item jid='d' node='http://jabber.org/protocol/admin#get-online-users-list' name='Online'/>"
                  "</query>")
    items = tigase_compat.commands_list("sess-man", "sess-man@d", disco)["items"]
    assert items == [
        {"jid": "sess-man@d", "node": tigase_compat.ACTIVE_USERS, "name": "Get list of active users"},
        {"jid": "sess-man@d", "node": tigase_compat.ONLINE_USERS, "name": "Online"}]
    assert tigase_compat.commands_list("vhost-man", "vhost-man@d", None) == {"items": []}


class FakeServer:
    """Prosody's answers: get-online-users-list answers a form first, then the list."""

    def __init__(self, online):
        self.online, self.sent = online, []

    async def run(self, to, request):
        self.sent.append((to, request))
        node = request["node"]
        if not request["sessionid"]:
            opts = "".join(f"<option><value>{o}</value></option>" for o in ("25", "all"))
            return reply(f"<command xmlns='{C}' node='{node}' status='executing' sessionid='x'>"
                         f"<x xmlns='{D}' type='form'><field var='max_items' type='list-single'>{opts}</field>"
                         f"<field var='accountjids' type='jid-multi'/></x></command>")
        if node == tigase_compat.ONLINE_USERS:
            values = "".join(f"<value>{j}</value>" for j in self.online)
            return reply(f"<command xmlns='{C}' node='{node}' status='completed'><x xmlns='{D}' type='result'>"
                         f"<field var='onlineuserjids' type='text-multi'>{values}</field></x></command>")
        return reply(f"<command xmlns='{C}' node='{node}' status='completed'><note type='info'>ok</note></command>")


def run(coro):
    return asyncio.run(coro)


def test_active_users_is_the_online_users_list_in_tigase_s_shape():
    server = FakeServer(["a@d", "b@d", "c@d"])
    request = {"node": tigase_compat.ACTIVE_USERS, "fields": [("domainjid", ["d"]), ("max_items", ["2"])],
               "sessionid": None, "action": None}
    result = run(tigase_compat.execute(server.run, "sess-man", "sess-man@d", "d", request))
    assert result == {"command": {"jid": "sess-man@d", "node": tigase_compat.ACTIVE_USERS, "fields": [
        {"var": "Users: 2", "label": "text-multi", "value": ["a@d", "b@d"]}]}}
    assert server.sent[1][1]["fields"] == [("max_items", ["all"])]  # "2" is no option of the server's


def test_end_user_session_notes_only_the_accounts_that_were_online():
    server = FakeServer(["a@d"])
    request = {"node": tigase_compat.END_SESSION, "fields": [("accountjids", ["A@d", "b@d"])],
               "sessionid": None, "action": None}
    result = run(tigase_compat.execute(server.run, "sess-man", "sess-man@d", "d", request))
    assert result["command"]["fields"] == [
        {"var": "Notes", "type": "text-multi", "value": ["Operation successful for user A@d"]}]
    assert server.sent[-1][1]["fields"] == [("accountjids", ["A@d", "b@d"])]


def test_vhost_commands_are_501_with_the_reason():
    request = {"node": "comp-repo-item-add", "fields": [], "sessionid": None, "action": None}
    with pytest.raises(HttpError) as e:
        run(tigase_compat.execute(FakeServer([]).run, "vhost-man", "vhost-man@d", "d", request))
    assert e.value.status == 501
