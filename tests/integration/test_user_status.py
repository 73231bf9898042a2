"""/rest/user/{jid}/status against a real Prosody, seen by real clients: alice's external status
reaches bob (a mutual contact), is sent again when bob logs in again, when the component
reconnects after a restart, and is withdrawn with available=false (Tigase's TestRestUserStatus)."""

from __future__ import annotations

import asyncio
import time
from xml.etree import ElementTree

import pytest

from clients import XmppClient, connect_client
from rest import ADMIN, ALICE, call
from tools.prosody import ProsodyServer

STATUS_URL = "/rest/user/alice@localhost/status"
EXTERNAL = "alice@localhost/tigase-external"
XML = {"Content-Type": "application/xml"}
WAIT = 5.0  # seconds for anything the server should deliver
QUIET = 1.0  # seconds a client listens to show that something is NOT delivered


async def presence_from(client: XmppClient, sender: str, timeout: float = WAIT, kind: str | None = None):
    """The next presence from ``sender`` (of type ``kind`` if given) in the client's queue; the
    presences before it are dropped."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{client.jid} got no {kind or ''} presence from {sender} within {timeout} s")
        try:
            stanza = await asyncio.wait_for(client.presences.get(), remaining)
        except asyncio.TimeoutError:
            continue
        if str(stanza["from"]) == sender and kind in (None, stanza["type"]):
            return stanza


async def no_presence_from(client: XmppClient, sender: str, quiet: float = QUIET) -> None:
    try:
        stanza = await presence_from(client, sender, quiet)
    except AssertionError:
        return
    raise AssertionError(f"{client.jid} unexpectedly got {stanza}")


async def befriend(one: XmppClient, other: XmppClient, timeout: float = WAIT) -> None:
    """Mutual presence subscription (roster items with subscription "both"), as users do it:
    each asks, the other approves."""
    async def mutual() -> bool:
        for client, contact in ((one, other), (other, one)):
            await client.xmpp.get_roster(timeout=timeout)
            if client.xmpp.client_roster[contact.xmpp.boundjid.bare]["subscription"] != "both":
                return False
        return True

    if await mutual():
        return
    for client in (one, other):  # approved by hand below (slixmpp: True approves, False refuses)
        client.xmpp.auto_authorize = None
        client.xmpp.auto_subscribe = False
    for asker, approver in ((one, other), (other, one)):
        asker.xmpp.send_presence(pto=approver.xmpp.boundjid.bare, ptype="subscribe")
        await presence_from(approver, asker.xmpp.boundjid.bare, timeout, kind="subscribe")
        approver.xmpp.send_presence(pto=asker.xmpp.boundjid.bare, ptype="subscribed")
    deadline = time.monotonic() + timeout
    while not await mutual():
        assert time.monotonic() < deadline, "the subscription did not become mutual"
        await asyncio.sleep(0.1)


def assert_external(stanza, show: str | None, status: str | None, priority: int) -> None:
    assert stanza["type"] == (show or "available"), stanza
    assert stanza["status"] == (status or "")
    assert stanza["priority"] == priority


@pytest.fixture
async def friends(xmpp_client):
    """Alice and bob online (resources "test"), each in the other's roster with subscription both."""
    alice = await xmpp_client("alice")
    bob = await xmpp_client("bob")
    await befriend(alice, bob)
    return alice, bob


async def test_contacts_see_the_status_again_on_login_until_withdrawn(component, xmpp_client, friends):
    _, bob = friends
    # only the API key: Tigase 2.x's authRequired override
    answer = await call(component, "POST", STATUS_URL, auth=None, body={"show": "xa", "status": "On the phone"})
    assert answer.status == 200, answer.text
    assert answer.json() == {"status": {
        "user": EXTERNAL, "available": "true", "priority": "-1", "show": "xa", "status": "On the phone",
        "success": True, "contacts": answer.json()["status"]["contacts"]}}
    assert answer.json()["status"]["contacts"] >= 1
    assert_external(await presence_from(bob, EXTERNAL), "xa", "On the phone", -1)

    await bob.disconnect()
    bob = await xmpp_client("bob", resource="again")
    assert_external(await presence_from(bob, EXTERNAL), "xa", "On the phone", -1)

    answer = await call(component, "POST", STATUS_URL, auth=None, body={"available": False})
    assert answer.status == 200 and answer.json()["status"]["success"] is True
    assert (await presence_from(bob, EXTERNAL))["type"] == "unavailable"

    await bob.disconnect()
    bob = await xmpp_client("bob", resource="later")
    await no_presence_from(bob, EXTERNAL)


async def test_the_user_own_clients_see_it_and_messages_reach_the_real_client(component, xmpp_client, friends):
    alice, bob = friends
    answer = await call(component, "POST", STATUS_URL, body={"command": {"show": "away", "priority": "5"}})
    assert answer.json()["status"]["success"] is True
    assert_external(await presence_from(bob, EXTERNAL), "away", None, 5)
    assert_external(await presence_from(alice, EXTERNAL), "away", None, 5)  # like a session's broadcast

    # The external resource is presence only: even with the higher priority it never takes messages.
    bob.xmpp.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
    assert (await alice.next_message())["body"] == "are you there?"

    await call(component, "POST", STATUS_URL, body={"available": "false"})
    assert (await presence_from(bob, EXTERNAL))["type"] == "unavailable"


async def test_custom_resource_with_an_xml_body(component, friends):
    _, bob = friends
    answer = await call(component, "POST", STATUS_URL + "/phone", headers=XML, body="""<command>
    <available>true</available>
    <priority>-5</priority>
    <show>dnd</show>
    <status>In a meeting</status>
</command>""")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
    status = ElementTree.fromstring(answer.text)
    assert status.tag == "status"
    assert {child.tag: child.text for child in status if child.tag != "contacts"} == {
        "user": "alice@localhost/phone", "available": "true", "priority": "-5", "show": "dnd",
        "status": "In a meeting", "success": "true"}
    assert_external(await presence_from(bob, "alice@localhost/phone"), "dnd", "In a meeting", -5)

    answer = await call(component, "POST", STATUS_URL + "/phone", headers=XML,
                        body="<command><available>false</available></command>")
    assert ElementTree.fromstring(answer.text).findtext("success") == "true"
    assert (await presence_from(bob, "alice@localhost/phone"))["type"] == "unavailable"


async def test_a_post_without_body_uses_the_defaults(component, friends):
    _, bob = friends
    answer = await call(component, "POST", STATUS_URL + "?type=application/json", auth=None)
    assert answer.json()["status"] == {"user": EXTERNAL, "available": "true", "priority": "-1",
                                       "success": True, "contacts": answer.json()["status"]["contacts"]}
    assert_external(await presence_from(bob, EXTERNAL), None, None, -1)
    await call(component, "POST", STATUS_URL, body={"available": "false"})
    assert (await presence_from(bob, EXTERNAL))["type"] == "unavailable"


@pytest.mark.parametrize("path, body, status, reason", [
    (STATUS_URL, {"show": "sleeping"}, 400, "'show' must be one of chat, away, xa, dnd"),
    (STATUS_URL, {"priority": "high"}, 400, "'priority' must be an integer from -128 to 127"),
    (STATUS_URL, {"priority": 128}, 400, "not 128"),
    (STATUS_URL, {"available": "maybe"}, 400, "'available' must be true or false"),
    (STATUS_URL, {"status": ["a", "b"]}, 400, "'status' must be a string"),
    (STATUS_URL, ["a"], 400, "must be an object"),
    ("/rest/user/localhost/status", None, 400, "must be a bare JID like user@domain"),
    ("/rest/user/alice@elsewhere.example/status", None, 404, "not a user of localhost"),
])
async def test_invalid_requests_say_why(component, path, body, status, reason):
    answer = await call(component, "POST", path + "?type=application/json", auth=None, body=body)
    assert answer.status == status, answer.text
    assert reason in answer.json()["error"]["reason"]


async def test_basic_auth_needs_an_admin_when_no_api_key_is_required(component_factory):
    component = component_factory(auth={"open_access": True})
    answer = await call(component, "POST", STATUS_URL + "?type=application/json", auth=ALICE,
                        headers={"Api-Key": None}, body={"show": "chat"})
    assert answer.status == 403 and "not an admin" in answer.json()["error"]["reason"]
    answer = await call(component, "POST", STATUS_URL, auth=ADMIN, headers={"Api-Key": None},
                        body={"available": False})
    assert answer.status == 200 and answer.json()["status"]["success"] is True


async def test_a_restarted_component_announces_the_stored_status_again(component_factory, friends, tmp_path):
    _, bob = friends
    first = component_factory(storage={"data_dir": str(tmp_path)})
    answer = await call(first, "POST", STATUS_URL, body={"show": "chat", "status": "Back soon"})
    assert answer.json()["status"]["success"] is True
    assert_external(await presence_from(bob, EXTERNAL), "chat", "Back soon", -1)
    assert first.stop() == 0  # Prosody takes one connection per component JID: the old one goes first
    assert (tmp_path / "statuses.sqlite3").is_file()

    second = component_factory(storage={"data_dir": str(tmp_path)})
    assert_external(await presence_from(bob, EXTERNAL), "chat", "Back soon", -1)
    await call(second, "POST", STATUS_URL, body={"available": False})
    assert (await presence_from(bob, EXTERNAL))["type"] == "unavailable"


# --- servers configured differently ------------------------------------------------------------


class EditedProsody(ProsodyServer):
    """The test server with lines of its config replaced."""

    def __init__(self, workdir, edits: dict[str, str], **kwargs) -> None:
        super().__init__(workdir, **kwargs)
        self.edits = edits

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text(encoding="utf-8")
        for old, new in self.edits.items():
            assert old in text, f"the Prosody config template changed: {old!r} is gone; update this test"
            text = text.replace(old, new)
        self.config_path.write_text(text, encoding="utf-8")


NO_PRIVILEGES = {'modules_enabled = { "privilege"; }': "modules_enabled = { }"}  # on the VirtualHost
VALIDATE_FROM = {"validate_from_addresses = false": "validate_from_addresses = true"}  # Prosody's default


@pytest.fixture
async def edited_prosody(tmp_path_factory):
    """``await start(edits, **kwargs)``: a separate Prosody with alice and bob online and mutual
    contacts; returns (server, alice, bob). Everything is stopped after the test."""
    servers, clients = [], []

    async def start(edits: dict[str, str], **kwargs):
        server = EditedProsody(tmp_path_factory.mktemp("edited-prosody"), edits, **kwargs)
        servers.append(server)
        for user in ("alice", "bob"):
            server.register(user, f"{user}pass")
        server.start()
        for user in ("alice", "bob"):
            clients.append(await connect_client(f"{user}@localhost", f"{user}pass", "127.0.0.1", server.c2s_port))
        await befriend(*clients[-2:])
        return server, *clients[-2:]

    yield start
    for client in clients:
        await client.disconnect()
    for server in servers:
        server.stop()


async def test_without_xep_0356_the_admin_command_reads_the_roster(edited_prosody, component_factory):
    server, _, bob = await edited_prosody(NO_PRIVILEGES)
    component = component_factory(xmpp=server.component_config())
    answer = await call(component, "POST", STATUS_URL, auth=None, body={"show": "xa"})
    assert answer.status == 200
    assert answer.json()["status"]["success"] is True
    assert_external(await presence_from(bob, EXTERNAL), "xa", None, -1)


async def test_without_any_way_to_read_the_roster_success_is_false_with_the_reason(edited_prosody,
                                                                                    component_factory):
    server, _, bob = await edited_prosody(NO_PRIVILEGES, component_is_admin=False)
    component = component_factory(xmpp=server.component_config())
    answer = await call(component, "POST", STATUS_URL, auth=None, body={"show": "xa"})
    assert answer.status == 200  # as Tigase: the call ran, the outcome is in the body
    status = answer.json()["status"]
    assert (status["success"], status["contacts"]) == (False, 0)
    assert "no XEP-0356 roster get" in status["reason"]
    assert "get-user-roster: localhost answered forbidden" in status["reason"]
    await no_presence_from(bob, EXTERNAL)


async def test_a_server_refusing_user_from_addresses_is_reported_not_fought(edited_prosody, component_factory):
    server, _, bob = await edited_prosody(VALIDATE_FROM)
    component = component_factory(xmpp=server.component_config())
    # The first presence from alice makes Prosody close the link (invalid-from); it reconnects and
    # from then on the answer says why, instead of every re-announce closing the link again.
    await call(component, "POST", STATUS_URL, body={"show": "xa"})
    deadline = time.monotonic() + 10
    while True:
        answer = await call(component, "POST", STATUS_URL + "?type=application/json", body={"show": "xa"})
        if answer.status == 200:
            break
        assert answer.status == 503 and time.monotonic() < deadline, answer.text  # reconnecting
        await asyncio.sleep(0.2)
    status = answer.json()["status"]
    assert status["success"] is False
    assert "invalid-from" in status["reason"] and "validate_from_addresses = false" in status["reason"]
    await no_presence_from(bob, EXTERNAL)
    # The link comes back and stays up: once the refusal is known it is not fought with new presences.
    # Usually that takes one close. Prosody closes its socket with our next stanzas still unread, so
    # the kernel may answer with a reset that drops its stream error before we read it; the refusal
    # is then learned at the second close. Never more: every close is an invalid-from, at most two.
    deadline = time.monotonic() + 10
    while (health := (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]
           )["link_connects"] < 2 or health["xmpp_link"] != "up":
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.1)
    connects = health["link_connects"]
    assert health["xmpp_link"] == "up" and connects in (2, 3), component.log_text()[-4000:]
    await asyncio.sleep(1)
    health = (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]
    assert (health["xmpp_link"], health["link_connects"]) == ("up", connects), component.log_text()[-4000:]
    log = component.log_text()
    assert log.count("Component http.localhost connected") == connects
    assert log.count("XMPP link lost") == connects - 1
    assert log.count("Stream error from the server: invalid-from") <= connects - 1
