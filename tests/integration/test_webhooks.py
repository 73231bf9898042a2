"""Bots over HTTP against a real server: webhooks for stanzas to http.<domain>, JSON and text
posts to /rest/stream, the GET shortcuts. Real clients on the XMPP side, a real HTTP receiver
(examples/echo_bot.py, or an aiohttp server in the test) on the other."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import pytest
from aiohttp import web
from slixmpp.exceptions import IqError

from components import REPO
from rest import call
from tools.prosody import free_port, http_status

pytestmark = pytest.mark.portable

ECHO_BOT = REPO / "examples" / "echo_bot.py"
JSON_HEADERS = {"Content-Type": "application/json"}


class Receiver:
    """A webhook receiver in the test's loop: records each POST, answers with ``self.answer``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.posts: list[tuple[dict, bytes]] = []  # (headers, body)
        self.arrived = asyncio.Event()
        self.answer = lambda data: web.Response(status=204)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.posts.append((dict(request.headers), body))
        self.arrived.set()
        response = self.answer(json.loads(body))
        return await response if asyncio.iscoroutine(response) else response

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.posts]

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.posts)} of {count} posts arrived within {timeout} s: {self.bodies()}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def chat(client, to: str, body: str) -> None:
    client.xmpp.send_message(mto=to, mbody=body, mtype="chat")


async def iq_to(client, to: str, payload: str = "{urn:xmpp:ping}ping", node: str | None = None, timeout: float = 15):
    iq = client.xmpp.Iq()
    iq["type"] = "get"
    iq["to"] = to
    iq.append(Element(payload, {"node": node} if node else {}))
    return await iq.send(timeout=timeout)


DISCO_INFO = "{http://jabber.org/protocol/disco#info}query"
DISCO_ITEMS = "{http://jabber.org/protocol/disco#items}query"


async def health(component) -> dict:
    return (await call(component, "GET", "/rest/health?type=application/json", auth=None)).json()["health"]


# --- receiving ----------------------------------------------------------------------------------


async def test_the_readme_echo_bot_answers_a_client(component_factory, xmpp_client):
    """examples/echo_bot.py (the README's example, kept identical by tests/unit/test_docs_webhooks.py)."""
    port = free_port()
    bot = subprocess.Popen([sys.executable, str(ECHO_BOT), str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while http_status(f"http://127.0.0.1:{port}/") is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the bot answers GET with 501: it is up
        component = component_factory(webhooks={"url": f"http://127.0.0.1:{port}/"})
        alice = await xmpp_client("alice")
        chat(alice, "echo@http.localhost", "hello bot")
        answer = await alice.next_message(timeout=10)
        assert (answer["body"], str(answer["from"]), answer["type"]) == ("echo: hello bot", "echo@http.localhost", "chat")
        # An IQ gets exactly one reply: the bot's 204 is an empty result.
        reply = await iq_to(alice, "echo@http.localhost/any")
        assert reply["type"] == "result"
        assert (await health(component))["webhook_delivered"] == 2
    finally:
        bot.kill()
        bot.wait(5)


async def test_the_json_posted_carries_the_stanza_and_the_signature(component_factory, xmpp_client, receiver):
    receiver.answer = lambda data: web.json_response({"body": f"got {data.get('body')}", "to": "mallory@localhost",
                                                      "from": "admin@localhost"})
    component_factory(webhooks={"url": receiver.url + "/{kind}/{type}/{to}", "secret": "s3cret"})
    alice = await xmpp_client("alice")
    message = alice.xmpp.make_message(mto="bot@http.localhost/desk", mbody="hi", mtype="chat")
    html = SubElement(message.xml, "{http://jabber.org/protocol/xhtml-im}html")
    SubElement(SubElement(html, "{http://www.w3.org/1999/xhtml}body"), "{http://www.w3.org/1999/xhtml}p").text = "hi"
    message.send()
    answer = await alice.next_message(timeout=10)
    # The envelope is the original's, swapped, whatever the receiver put in it.
    assert (answer["body"], str(answer["from"]), str(answer["to"])) == ("got hi", "bot@http.localhost/desk", alice.jid)
    headers, body = receiver.posts[0]
    data = json.loads(body)
    assert data["kind"] == "message" and data["type"] == "chat" and data["body"] == "hi"
    assert data["to"] == "bot@http.localhost/desk" and data["from"] == alice.jid
    assert "<p>hi</p>" in data["html"] and "xml" not in data  # all of it said in the keys
    assert headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["Content-Type"].startswith("application/json")


async def test_xml_webhooks_and_the_url_fields(component_factory, xmpp_client, receiver):
    seen = []
    receiver.answer = lambda data: web.Response(status=204)

    async def handle(request):
        seen.append(request.raw_path)
        body = await request.read()
        receiver.posts.append((dict(request.headers), body))
        return web.Response(body=b"<message xmlns='jabber:client'><body>pong</body></message>",
                            content_type="application/xmpp+xml")
    receiver._handle = handle  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    component_factory(webhooks={"url": receiver.url + "/{kind}/{to}", "content_type": "application/xmpp+xml"})
    alice = await xmpp_client("alice")
    chat(alice, "bot@http.localhost", "ping")
    answer = await alice.next_message(timeout=10)
    assert (answer["body"], str(answer["from"])) == ("pong", "bot@http.localhost")
    assert seen == ["/hook/message/bot%40http.localhost"]
    assert receiver.posts[0][1].startswith(b"<message") and b"<body>ping</body>" in receiver.posts[0][1]


@pytest.mark.parametrize("status, condition", [(500, "internal-server-error"), (404, "item-not-found"),
                                               (403, "forbidden"), (503, "service-unavailable")])
async def test_an_iq_gets_the_mapped_error_of_the_receivers_status(component_factory, xmpp_client, receiver,
                                                                   status, condition):
    receiver.answer = lambda data: web.Response(status=status, text="no")
    component_factory(webhooks={"url": receiver.url})
    alice = await xmpp_client("alice")
    with pytest.raises(IqError) as error:
        await iq_to(alice, "bot@http.localhost")
    assert error.value.iq["error"]["condition"] == condition


async def test_an_iq_gets_remote_server_timeout_when_the_receiver_is_slow(component_factory, xmpp_client, receiver):
    async def slow(data):
        await asyncio.sleep(5)
        return web.Response(status=204)
    receiver.answer = slow
    component_factory(webhooks={"url": receiver.url, "timeout": 1})
    alice = await xmpp_client("alice")
    started = time.monotonic()
    with pytest.raises(IqError) as error:
        await iq_to(alice, "bot@http.localhost")
    assert error.value.iq["error"]["condition"] == "remote-server-timeout"
    assert time.monotonic() - started < 4


async def test_an_iq_gets_service_unavailable_when_nothing_listens(component_factory, xmpp_client):
    component_factory(webhooks={"url": f"http://127.0.0.1:{free_port()}/"})
    alice = await xmpp_client("alice")
    with pytest.raises(IqError) as error:
        await iq_to(alice, "bot@http.localhost")
    assert error.value.iq["error"]["condition"] == "service-unavailable"


async def test_the_components_own_work_is_not_posted(component_factory, xmpp_client, receiver):
    receiver.answer = lambda data: web.Response(status=404)
    component_factory(webhooks={"url": receiver.url})
    alice = await xmpp_client("alice")
    info = await iq_to(alice, "http.localhost", DISCO_INFO)
    assert 'var="http://jabber.org/protocol/commands"' in str(info)
    items = await iq_to(alice, "http.localhost", DISCO_ITEMS, node="http://jabber.org/protocol/commands")
    assert items["type"] == "result"
    # A disco to a bot is the bot's: its 404 is item-not-found.
    with pytest.raises(IqError) as error:
        await iq_to(alice, "bot@http.localhost", DISCO_INFO)
    assert error.value.iq["error"]["condition"] == "item-not-found"
    assert [d["to"] for d in receiver.bodies()] == ["bot@http.localhost"]  # no grant, no disco of http.localhost


async def test_events_and_stanzas_choose_what_is_posted(component_factory, xmpp_client, receiver):
    component_factory(webhooks={"url": receiver.url, "events": ["full"], "stanzas": ["message"]})
    alice = await xmpp_client("alice")
    chat(alice, "bot@http.localhost", "bare: not posted")
    chat(alice, "http.localhost", "host: not posted")
    chat(alice, "bot@http.localhost/r", "full: posted")
    await receiver.wait_for(1, 10)
    await asyncio.sleep(0.5)
    assert [d["body"] for d in receiver.bodies()] == ["full: posted"]


async def test_no_message_is_lost_while_the_receiver_is_down_for_10_s(component_factory, xmpp_client):
    receiver = Receiver()  # not started: nothing listens on its port yet
    component = component_factory(webhooks={"url": receiver.url})
    alice = await xmpp_client("alice")
    for i in range(5):
        chat(alice, "bot@http.localhost", f"message {i}")
    await asyncio.sleep(2)
    report = await health(component)
    assert (report["webhook_queue"], report["webhook_receiver"]) == (5, "down"), report
    await asyncio.sleep(8)
    await receiver.start()
    try:
        await receiver.wait_for(5, 40)
        # All of them, once each (up to 8 are posted at once, so the arrival order may vary).
        assert sorted(d["body"] for d in receiver.bodies()) == [f"message {i}" for i in range(5)]
        for headers, _ in receiver.posts:
            assert headers["X-Delivery-Id"]
        await asyncio.sleep(0.3)
        report = await health(component)
        assert (report["webhook_queue"], report["webhook_receiver"], report["webhook_bounced"]) == (0, "up", 0)
        with pytest.raises(asyncio.TimeoutError):
            await alice.next_message(timeout=0.5)  # no bounce
    finally:
        await receiver.stop()


async def test_the_queue_survives_a_restart(component_factory, xmpp_client, tmp_path):
    receiver = Receiver()
    sections = {"webhooks": {"url": receiver.url}, "storage": {"data_dir": str(tmp_path / "data")}}
    first = component_factory(**sections)
    alice = await xmpp_client("alice")
    for i in range(3):
        chat(alice, "bot@http.localhost", f"kept {i}")
    await asyncio.sleep(1.5)
    assert (await health(first))["webhook_queue"] == 3
    assert first.stop() == 0
    await receiver.start()
    try:
        component_factory(**sections)
        await receiver.wait_for(3, 20)
        assert sorted(d["body"] for d in receiver.bodies()) == [f"kept {i}" for i in range(3)]
    finally:
        await receiver.stop()


async def test_a_full_queue_and_a_given_up_message_bounce_to_the_sender(component_factory, xmpp_client):
    receiver = Receiver()  # never started
    component_factory(webhooks={"url": receiver.url, "max_queue": 2, "retry_for": 3})
    alice = await xmpp_client("alice")
    for i in range(3):
        chat(alice, "bot@http.localhost", f"m{i}")
    bounce = await alice.next_message(timeout=5)
    assert (bounce["type"], bounce["error"]["condition"], str(bounce["from"])) == (
        "error", "resource-constraint", "bot@http.localhost")
    given_up = [await alice.next_message(timeout=15) for _ in range(2)]
    assert {(m["type"], m["error"]["condition"]) for m in given_up} == {("error", "remote-server-timeout")}


# --- sending ------------------------------------------------------------------------------------


async def test_json_and_text_posts_arrive(component, xmpp_client):
    alice = await xmpp_client("alice")
    answer = await call(component, "POST", "/rest/stream/alice@localhost", body="plain text",
                        headers={"Content-Type": "text/plain"})
    assert answer.status == 200, answer.text
    message = await alice.next_message()
    assert (message["body"], message["type"], str(message["from"])) == ("plain text", "chat", "http.localhost")

    answer = await call(component, "POST", "/rest/stream/", body={
        "kind": "message", "type": "chat", "to": "alice@localhost", "from": "bot@http.localhost",
        "body": "from a bot", "oob_url": "https://example.com/a.png"})
    assert answer.status == 200, answer.text
    message = await alice.next_message()
    assert (message["body"], str(message["from"]), message.xml.findtext("{jabber:x:oob}x/{jabber:x:oob}url")) == (
        "from a bot", "bot@http.localhost", "https://example.com/a.png")


async def test_a_json_iq_gets_a_json_reply_also_when_a_bot_sends_it(component, xmpp_server):
    for sender in (None, "bot@http.localhost"):
        stanza = {"kind": "iq", "type": "get", "to": xmpp_server.domain, "version": True}
        if sender:
            stanza["from"] = sender
        answer = await call(component, "POST", "/rest/stream/", body=stanza)
        assert answer.status == 200, answer.text
        data = answer.json()
        assert data["kind"] == "iq" and data["type"] == "result" and data["version"]["name"], data
        if sender:
            assert data["to"] == sender


async def test_get_shortcuts_answer(component, xmpp_server):
    domain = xmpp_server.domain
    answer = await call(component, "GET", f"/rest/ping/{domain}?type=application/json")
    assert (answer.status, answer.json()["type"]) == (200, "result")
    answer = await call(component, "GET", f"/rest/version/{domain}?type=application/json")
    assert answer.status == 200 and answer.json()["version"]["name"], answer.text
    answer = await call(component, "GET", f"/rest/disco/{domain}?type=application/json")
    assert answer.status == 200 and "http://jabber.org/protocol/disco#info" in answer.json()["disco"]["features"]
    answer = await call(component, "GET", f"/rest/items/{domain}?type=application/json")
    assert answer.status == 200 and "http.localhost" in [i["jid"] for i in answer.json()["items"]], answer.text
    answer = await call(component, "GET", f"/rest/items/{domain}?node=http://jabber.org/protocol/commands")
    assert answer.status == 200 and answer.text.startswith("<iq") and "<item " in answer.text, answer.text
    answer = await call(component, "GET", "/rest/disco/nobody@" + domain)
    assert answer.status in (403, 404, 503), answer.text  # the server answers for an unknown account
    assert (await call(component, "GET", f"/rest/ping/{domain}", auth=None)).status == 401
