"""External statuses (tigase_rest/xmpp/presence.py): the request body, the stanzas, the roster
answers, the SQLite store, and the manager against a scripted link (the real server is in
tests/integration/test_user_status.py)."""

from __future__ import annotations

import asyncio
from xml.etree.ElementTree import Element, fromstring

import pytest
from slixmpp.stanza import Message, Presence

from tigase_rest.errors import HttpError
from tigase_rest.features.presence.request import Activity, Status, parse_status
from tigase_rest.features.presence.service import ExternalStatuses, Outcome
from tigase_rest.features.presence.stanzas import ACTIVITY_NS, GET_USER_ROSTER, RosterError, contacts_in, presence
from tigase_rest.features.presence.store import SqliteStatusStore as StatusStore
from tigase_rest.xmpp.privilege import PrivilegeTracker, Privileges

ROSTER = """<iq xmlns="jabber:component:accept" type="result" from="alice@localhost">
  <query xmlns="jabber:iq:roster">
    <item jid="bob@localhost" subscription="both"/>
    <item jid="carol@localhost" subscription="from"/>
    <item jid="dave@localhost" subscription="to"/>
    <item jid="erin@localhost" subscription="none" ask="subscribe"/>
  </query>
</iq>"""

ADMIN_ROSTER = f"""<iq xmlns="jabber:component:accept" type="result" from="localhost">
  <command xmlns="http://jabber.org/protocol/commands" node="{GET_USER_ROSTER}" status="completed">
    <x xmlns="jabber:x:data" type="result">
      <field var="accountjid"><value>alice@localhost</value></field>
      <query xmlns="jabber:iq:roster"><item jid="bob@localhost" subscription="both"/></query>
    </x>
  </command>
</iq>"""

NO_SUCH_USER = f"""<iq xmlns="jabber:component:accept" type="result" from="localhost">
  <command xmlns="http://jabber.org/protocol/commands" node="{GET_USER_ROSTER}" status="completed">
    <note type="error">User does not exist</note>
  </command>
</iq>"""

FORBIDDEN = """<iq xmlns="jabber:component:accept" type="error" from="localhost">
  <error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
    <text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">You don't have permission</text></error>
</iq>"""


# --- the request body ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "", {}, {"command": ""}, {"command": {}}])
def test_no_body_means_available_with_priority_minus_one(content):
    assert parse_status(content) == Status(available=True, priority=-1)


@pytest.mark.parametrize("content", [
    {"available": "true", "priority": "-1", "show": "xa", "status": "On the phone"},  # the reference's JSON
    {"command": {"available": "true", "priority": "-1", "show": "xa", "status": "On the phone"}},  # its XML
    {"status": {"available": True, "priority": -1, "show": "xa", "status": "On the phone"}},  # any XML root
])
def test_flat_wrapped_and_typed_bodies_are_the_same_status(content):
    assert parse_status(content) == Status(True, -1, "xa", "On the phone")


def test_priority_as_text_or_number():
    assert [parse_status({"priority": p}).priority for p in ("5", " -128 ", "+127", 0)] == [5, -128, 127, 0]


def test_offline_and_activity():
    status = parse_status({"activity": {"category": "relaxing", "type": "partying", "text": "Party!"}})
    assert status == Status(activity=Activity("relaxing", "partying", "Party!"))
    # withdrawing sends a bare unavailable presence: nothing else is read, so nothing else can refuse it
    assert parse_status({"available": "False", "status": "x" * 600_000, "show": "nonsense"}) == Status(available=False)
    # a flat body with only an activity is not mistaken for a wrapper
    assert parse_status({"activity": {"category": "working"}}).activity == Activity("working")


def test_text_fields_are_bounded():
    assert parse_status({"status": "x" * 1024}).status == "x" * 1024
    for content in ({"status": "x" * 1025}, {"activity": {"category": "working", "text": "y" * 5000}}):
        with pytest.raises(HttpError) as e:
            parse_status(content)
        assert e.value.status == 400 and "at most 1024" in e.value.reason


@pytest.mark.parametrize("content, reason", [
    ({"show": "sleeping"}, "'show' must be one of chat, away, xa, dnd"),
    ({"priority": "1.5"}, "'priority' must be an integer"),
    ({"priority": True}, "'priority' must be an integer"),
    ({"priority": "1_0"}, "'priority' must be an integer"),
    ({"priority": "\u0661"}, "'priority' must be an integer"),  # an Arabic-Indic digit, which int() takes
    ({"priority": -129}, "not -129"),
    ({"available": "yes"}, "'available' must be true or false"),
    ({"available": 1}, "'available' must be true or false"),
    ({"status": {"text": "x"}, "show": "xa"}, "'status' must be a string"),
    ({"status": "nul\u0000"}, "'status' contains U+0000, a character XML cannot carry"),
    ({"activity": {"category": "<bad/>"}}, "'activity.category' must be one of"),
    ({"activity": {"category": "relaxing", "type": "a b"}}, "'activity.type' must be"),
    ({"activity": "relaxing"}, "'activity' must be an object"),
    (["available"], "must be an object"),
    ({"command": ["x"]}, "must be an object"),
])
def test_invalid_bodies_are_400_with_the_reason(content, reason):
    with pytest.raises(HttpError) as raised:
        parse_status(content)
    assert raised.value.status == 400
    assert reason in raised.value.reason


# --- stanzas and answers ------------------------------------------------------------------------


def test_presence_carries_show_status_priority_and_activity():
    stanza = presence(Status(True, -1, "xa", "On the phone", Activity("relaxing", "partying", "Party!")),
                      "alice@localhost/tigase-external", "bob@localhost")
    assert stanza.attrib == {"from": "alice@localhost/tigase-external", "to": "bob@localhost"}
    assert [stanza.findtext(n) for n in ("show", "status", "priority")] == ["xa", "On the phone", "-1"]
    activity = stanza.find(f"{{{ACTIVITY_NS}}}activity")
    assert activity.find(f"{{{ACTIVITY_NS}}}relaxing/{{{ACTIVITY_NS}}}partying") is not None
    assert activity.findtext(f"{{{ACTIVITY_NS}}}text") == "Party!"


def test_unavailable_presence_is_bare():
    stanza = presence(Status(available=False, show="xa"), "alice@localhost/r", "bob@localhost")
    assert stanza.get("type") == "unavailable" and len(stanza) == 0


def test_contacts_are_those_who_may_see_the_presence():
    assert contacts_in(fromstring(ROSTER), "x") == {"bob@localhost", "carol@localhost"}
    assert contacts_in(fromstring(ADMIN_ROSTER), "x") == {"bob@localhost"}


@pytest.mark.parametrize("reply, reason", [
    (NO_SUCH_USER, "localhost answered: User does not exist"),
    (FORBIDDEN, "localhost answered forbidden: You don't have permission"),
    ('<iq type="result"/>', "localhost answered without a roster"),
])
def test_roster_failures_say_why(reply, reason):
    with pytest.raises(RosterError, match=reason):
        contacts_in(fromstring(reply), "localhost")


def test_the_answer_is_tigase_status_object_plus_contacts_and_reason():
    ok = Outcome("alice@localhost/tigase-external", Status(True, -1, "xa", "On the phone"), True, 2)
    assert ok.as_data() == {"status": {"user": "alice@localhost/tigase-external", "available": "true",
                                       "priority": "-1", "show": "xa", "status": "On the phone",
                                       "success": True, "contacts": 2}}
    failed = Outcome("alice@localhost/r", Status(available=False), False, reason="no roster")
    assert failed.as_data()["status"] == {"user": "alice@localhost/r", "available": "false", "priority": "-1",
                                          "success": False, "contacts": 0, "reason": "no roster"}


# --- the store ----------------------------------------------------------------------------------


async def test_store_keeps_statuses_across_instances(tmp_path):
    path = tmp_path / "new" / "dir" / "statuses.sqlite3"
    store = StatusStore(path)
    await store.put("alice@localhost", "a", Status(True, 3, "dnd", "Busy", Activity("working", None, "coding")))
    await store.put("alice@localhost", "b", Status())
    await store.put("alice@localhost", "b", Status(priority=7))  # replaces
    await store.put("bob@localhost", "b", Status())
    await store.delete("alice@localhost", "a")
    await store.close()
    assert await StatusStore(path).load() == {"alice@localhost": {"b": Status(priority=7)}, "bob@localhost": {"b": Status()}}
    assert await StatusStore(path).load_user("alice@localhost") == {"b": Status(priority=7)}
    assert await StatusStore(path).load_user("carol@localhost") == {}


async def test_store_that_cannot_be_created_is_a_500_with_the_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(HttpError) as raised:
        await StatusStore(tmp_path / "file" / "statuses.sqlite3").put("a@b", "r", Status())
    assert raised.value.status == 500 and "file/statuses.sqlite3" in raised.value.reason


# --- the manager --------------------------------------------------------------------------------


class ScriptedLink:
    """Stands for the component link: records stanzas, answers IQs from ``rosters``."""

    def __init__(self, rosters: dict[str, str]):
        self.rosters = rosters  # IQ "to" (the user, or the domain for the admin command) -> reply XML
        self.sent: list[Element] = []
        self.asked: list[str] = []

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        self.asked.append(iq.get("to"))
        return fromstring(self.rosters.get(iq.get("to"), FORBIDDEN))

    def take(self) -> set[tuple]:
        """(from, to, type, show) of what was sent since the last call."""
        sent, self.sent = self.sent, []
        return {(s.get("from"), s.get("to"), s.get("type"), s.findtext("show")) for s in sent}


def manager(tmp_path, rosters, privileges=Privileges(roster="both", presence="roster")):
    link = ScriptedLink(rosters)
    tracker = PrivilegeTracker(link, "localhost")
    tracker.current = privileges
    return ExternalStatuses(link, "localhost", tracker, StatusStore(tmp_path / "statuses.sqlite3")), link


def presence_stanza(sender: str, kind: str | None = None) -> Presence:
    xml = Element("{jabber:component:accept}presence", {"from": sender, "to": "http.localhost"})
    if kind:
        xml.set("type", kind)
    return Presence(xml=xml)


async def test_status_goes_to_contacts_and_own_resources_and_is_stored(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})
    outcome = await statuses.set("alice@localhost", "tigase-external", Status(show="xa"))
    assert (outcome.success, outcome.contacts) == (True, 2)
    assert link.take() == {("alice@localhost/tigase-external", to, None, "xa")
                           for to in ("bob@localhost", "carol@localhost", "alice@localhost")}
    restarted, _ = manager(tmp_path, {})
    assert await restarted.store.load() == {"alice@localhost": {"tigase-external": Status(show="xa")}}
    await statuses.close()


async def test_without_privilege_the_admin_command_is_used(tmp_path):
    statuses, link = manager(tmp_path, {"localhost": ADMIN_ROSTER}, Privileges())
    outcome = await statuses.set("alice@localhost", "r", Status())
    assert (outcome.success, outcome.contacts, link.asked) == (True, 1, ["localhost"])


async def test_when_no_roster_can_be_read_nothing_is_sent_or_stored(tmp_path):
    statuses, link = manager(tmp_path, {"localhost": NO_SUCH_USER})
    outcome = await statuses.set("alice@localhost", "r", Status())
    assert outcome.success is False
    assert outcome.reason.startswith("Cannot read the roster of alice@localhost: XEP-0356 roster get: "
                                     "alice@localhost answered forbidden")
    assert "admin command get-user-roster: localhost answered: User does not exist" in outcome.reason
    assert link.asked == ["alice@localhost", "localhost"]
    assert link.sent == [] and await statuses.store.load() == {}


async def test_offline_withdraws_from_contacts_and_store(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})
    await statuses.set("alice@localhost", "r", Status(show="dnd"))
    link.take()
    outcome = await statuses.set("alice@localhost", "r", Status(available=False))
    assert (outcome.success, outcome.contacts) == (True, 2)
    assert link.take() == {("alice@localhost/r", to, "unavailable", None)
                           for to in ("bob@localhost", "carol@localhost", "alice@localhost")}
    assert await statuses.store.load() == {}


async def test_offline_uses_the_last_known_contacts_when_the_roster_fails(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})
    await statuses.set("alice@localhost", "r", Status())
    link.take()
    link.rosters.clear()
    outcome = await statuses.set("alice@localhost", "r", Status(available=False))
    assert (outcome.success, outcome.contacts) == (True, 2)
    assert ("alice@localhost/r", "bob@localhost", "unavailable", None) in link.take()


async def test_a_contact_removed_from_the_roster_stops_seeing_the_status(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})
    await statuses.set("alice@localhost", "r", Status(show="xa"))
    link.rosters["alice@localhost"] = ROSTER.replace('jid="carol@localhost" subscription="from"',
                                                     'jid="carol@localhost" subscription="none"')
    link.take()
    await statuses.set("alice@localhost", "r", Status(show="away"))
    sent = link.take()
    assert ("alice@localhost/r", "carol@localhost", "unavailable", None) in sent
    assert ("alice@localhost/r", "bob@localhost", None, "away") in sent
    assert not any(to == "carol@localhost" and kind is None for _, to, kind, _ in sent)


async def test_a_contact_coming_online_gets_the_status_once_per_session(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})
    await statuses.set("alice@localhost", "r", Status(show="xa"))
    link.take()
    statuses._on_presence(presence_stanza("bob@localhost/phone"))
    assert link.take() == {("alice@localhost/r", "bob@localhost/phone", None, "xa")}
    statuses._on_presence(presence_stanza("bob@localhost/phone"))  # a later change of bob's own presence
    statuses._on_presence(presence_stanza("dave@localhost/pc"))  # subscription "to": may not see alice
    statuses._on_presence(presence_stanza("bob@localhost/phone", "subscribe"))
    statuses._on_presence(presence_stanza("alice@localhost/r"))  # our own presence, forwarded back
    assert link.take() == set()
    statuses._on_presence(presence_stanza("bob@localhost/phone", "unavailable"))
    statuses._on_presence(presence_stanza("bob@localhost/phone"))  # logged in again
    assert link.take() == {("alice@localhost/r", "bob@localhost/phone", None, "xa")}


async def test_every_connect_reads_the_rosters_and_announces_the_stored_statuses(tmp_path):
    first, _ = manager(tmp_path, {"alice@localhost": ROSTER})
    await first.set("alice@localhost", "r", Status(show="chat"))
    await first.close()

    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER})  # a restart
    statuses._on_connected(None)
    # forwarded presences that arrive before the re-announce are left to it: no duplicates
    statuses._on_presence(presence_stanza("bob@localhost/phone"))
    grant = Message(xml=fromstring('<message xmlns="jabber:component:accept" from="localhost">'
                                   '<privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/>'
                                   '</privilege></message>'))
    statuses.privileges._on_grant(grant)
    await asyncio.wait_for(statuses._announcing, 1)
    assert link.take() == {("alice@localhost/r", to, None, "chat")
                           for to in ("bob@localhost", "carol@localhost", "alice@localhost")}
    statuses._on_presence(presence_stanza("carol@localhost/pc"))  # after it: sent to that resource
    assert link.take() == {("alice@localhost/r", "carol@localhost/pc", None, "chat")}
    await statuses.close()


async def test_rows_that_could_not_be_sent_are_skipped_on_load(tmp_path, caplog):
    path = tmp_path / "statuses.sqlite3"
    store = StatusStore(path)
    await store.put("alice@localhost", "good", Status(show="xa"))
    await store.put("alice@localhost", "huge", Status(status="x" * 600_000))  # as an older version stored it
    await store.put("bob@localhost", "odd", Status(show="sleeping"))
    await store.put("carol@localhost", "r" * 300, Status())
    await store.close()
    assert await StatusStore(path).load() == {"alice@localhost": {"good": Status(show="xa")}}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and any("alice@localhost/huge" in m and "at most 1024" in m for m in skipped)


async def test_a_user_the_server_does_not_know_is_404_and_nothing_is_kept(tmp_path):
    empty = '<iq xmlns="jabber:component:accept" type="result"><query xmlns="jabber:iq:roster"/></iq>'
    statuses, link = manager(tmp_path, {"nobody@localhost": empty, "localhost": NO_SUCH_USER})
    with pytest.raises(HttpError) as e:
        await statuses.set("nobody@localhost", "r", Status(status="spam"))
    assert e.value.status == 404 and "nobody@localhost has no account" in e.value.reason
    assert link.sent == [] and await statuses.store.load() == {} and statuses._contacts == {}


async def test_statuses_per_user_and_in_all_are_bounded(tmp_path):
    statuses, link = manager(tmp_path, {"alice@localhost": ROSTER, "bob@localhost": ROSTER})
    statuses.max_per_user, statuses.max_total = 2, 3
    for resource in ("a", "b"):
        assert (await statuses.set("alice@localhost", resource, Status())).success
    with pytest.raises(HttpError) as e:
        await statuses.set("alice@localhost", "c", Status())
    assert e.value.status == 409 and "max_statuses_per_user" in e.value.reason
    assert (await statuses.set("alice@localhost", "a", Status(show="dnd"))).success  # an update takes no room
    assert (await statuses.set("bob@localhost", "a", Status())).success
    with pytest.raises(HttpError) as e:
        await statuses.set("bob@localhost", "b", Status())
    assert e.value.status == 409 and "max_statuses)" in e.value.reason
    await statuses.set("alice@localhost", "b", Status(available=False))  # withdrawing makes room again
    assert (await statuses.set("bob@localhost", "b", Status())).success
    assert sorted((await statuses.store.load())["bob@localhost"]) == ["a", "b"]
