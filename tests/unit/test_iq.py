"""IqTracker: what goes on the wire, how replies are matched, and every way a request ends."""

from __future__ import annotations

import asyncio
import re
from xml.etree.ElementTree import Element, SubElement, fromstring

import pytest

from tigase_rest.errors import HttpError
from tigase_rest.xmpp import iq as iq_module
from tigase_rest.xmpp.iq import IqTracker

NS = "jabber:component:accept"


class Wire:
    """What the tracker wrote, one string per write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, text: str) -> None:
        self.writes.append(text)

    def last_id(self) -> str:
        return re.search(r' id="([^"]+)"', self.writes[-1]).group(1)


def ping(to: str = "example.com", ident: str | None = "caller-1") -> Element:
    attrs = {"type": "get", "to": to}
    if ident is not None:
        attrs["id"] = ident
    stanza = Element("iq", attrs)
    SubElement(stanza, "{urn:xmpp:ping}ping")
    return stanza


def reply(ident: str, sender: str = "example.com", kind: str = "result") -> Element:
    return fromstring(f"<iq xmlns='{NS}' type='{kind}' id='{ident}' from='{sender}' to='http.example.com'/>")


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def tracker(wire) -> IqTracker:
    return IqTracker(wire, NS, lambda: "example.com")


def test_send_writes_the_stanza_in_the_stream_namespace_once(tracker, wire):
    message = Element("{jabber:client}message", {"to": "bob@example.com"})
    SubElement(message, "{jabber:client}body").text = "a < b & c"
    tracker.send(message)
    assert wire.writes == ['<message to="bob@example.com"><body>a &lt; b &amp; c</body></message>']


@pytest.mark.parametrize("where", ["text", "attribute value", "attribute name"])
def test_a_character_xml_cannot_carry_is_400_and_nothing_is_written(tracker, wire, where):
    message = Element("message", {"to": "bob@example.com"})
    body = SubElement(message, "body")
    if where == "text":
        body.text = "bell \x07"
    elif where == "attribute value":
        body.set("x", "\x01")
    else:
        body.set("a\x02", "x")
    with pytest.raises(HttpError) as e:
        tracker.send(message)
    assert e.value.status == 400
    assert e.value.reason.startswith("<body> contains U+000")
    assert wire.writes == []


async def test_a_reply_is_matched_by_our_wire_id_and_gets_the_callers_id_back(tracker, wire):
    request = ping(ident="caller-1")
    pending = asyncio.ensure_future(tracker.request(request, timeout=5))
    await asyncio.sleep(0)
    wire_id = wire.last_id()
    assert wire_id != "caller-1"  # ours, so two HTTP requests reusing an id never collide
    assert len(tracker) == 1
    assert tracker.take(reply(wire_id)) is True
    answer = await pending
    assert answer.get("type") == "result" and answer.get("id") == "caller-1"
    assert request.get("id") == "caller-1"
    assert len(tracker) == 0


async def test_a_request_without_id_gets_a_reply_without_id(tracker, wire):
    pending = asyncio.ensure_future(tracker.request(ping(ident=None), timeout=5))
    await asyncio.sleep(0)
    tracker.take(reply(wire.last_id(), kind="error"))
    answer = await pending
    assert answer.get("type") == "error" and answer.get("id") is None


async def test_a_reply_from_another_entity_is_not_taken_for_the_answer(tracker, wire):
    pending = asyncio.ensure_future(tracker.request(ping(to="example.com"), timeout=0.2))
    await asyncio.sleep(0)
    assert tracker.take(reply(wire.last_id(), sender="evil.example.net")) is True  # consumed, not delivered
    with pytest.raises(HttpError) as e:
        await pending
    assert e.value.status == 504
    assert len(tracker) == 0


async def test_a_reply_from_the_addressee_in_another_spelling_is_accepted(tracker, wire):
    pending = asyncio.ensure_future(tracker.request(ping(to="bob@example.com"), timeout=5))
    await asyncio.sleep(0)
    tracker.take(reply(wire.last_id(), sender="Bob@Example.com"))
    assert (await pending).get("type") == "result"


async def test_a_reply_from_a_resource_of_a_bare_addressee_is_not_the_answer(tracker, wire):
    # The server answers for a bare JID itself: one of the account's clients cannot answer in its place.
    pending = asyncio.ensure_future(tracker.request(ping(to="bob@example.com"), timeout=0.2))
    await asyncio.sleep(0)
    assert tracker.take(reply(wire.last_id(), sender="bob@example.com/phone")) is True
    with pytest.raises(HttpError) as e:
        await pending
    assert e.value.status == 504


async def test_a_reply_from_the_exact_full_jid_is_accepted(tracker, wire):
    pending = asyncio.ensure_future(tracker.request(ping(to="bob@example.com/phone"), timeout=5))
    await asyncio.sleep(0)
    tracker.take(reply(wire.last_id(), sender="bob@example.com/phone"))
    assert (await pending).get("type") == "result"


def test_a_stanza_over_the_limit_is_413_and_nothing_is_written(wire):
    tracker = IqTracker(wire, NS, lambda: "example.com", max_stanza_bytes=1000)
    small = Element("message", {"to": "bob@example.com"})
    SubElement(small, "body").text = "x" * 100
    tracker.send(small)
    big = Element("message", {"to": "bob@example.com"})
    SubElement(big, "body").text = "\u00e9" * 480  # 480 characters: 960 bytes of UTF-8, plus the envelope
    with pytest.raises(HttpError) as e:
        tracker.send(big)
    assert e.value.status == 413 and "at most 1000" in e.value.reason and "xmpp.max_stanza_bytes" in e.value.reason
    assert len(wire.writes) == 1


async def test_an_iq_over_the_limit_is_413_and_leaves_nothing_pending(wire):
    tracker = IqTracker(wire, NS, lambda: "example.com", max_stanza_bytes=200)
    iq = ping()
    iq[0].text = "x" * 300
    with pytest.raises(HttpError) as e:
        await tracker.request(iq, timeout=5)
    assert e.value.status == 413 and wire.writes == [] and len(tracker) == 0


def test_other_stanzas_are_not_taken(tracker):
    assert tracker.take(fromstring(f"<message xmlns='{NS}' id='x'/>")) is False
    assert tracker.take(reply("not-ours")) is False
    assert tracker.take(fromstring(f"<iq xmlns='{NS}' type='get' id='x'/>")) is False


async def test_no_answer_is_504_naming_the_addressee_and_nothing_stays_pending(tracker):
    with pytest.raises(HttpError) as e:
        await tracker.request(ping(to="silent.example.com"), timeout=0.05)
    assert e.value.status == 504
    assert "silent.example.com" in e.value.reason
    assert len(tracker) == 0


async def test_fail_all_ends_every_waiting_request(tracker):
    pending = [asyncio.ensure_future(tracker.request(ping(), timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)
    tracker.fail_all(HttpError(503, "link down"))
    for request in pending:
        with pytest.raises(HttpError) as e:
            await request
        assert e.value.status == 503
    assert len(tracker) == 0


async def test_past_max_pending_new_requests_are_503_at_once(tracker, monkeypatch):
    monkeypatch.setattr(iq_module, "MAX_PENDING", 2)
    pending = [asyncio.ensure_future(tracker.request(ping(), timeout=5)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(HttpError) as e:
        await tracker.request(ping(), timeout=5)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "5"
    tracker.fail_all(HttpError(503, "done"))
    await asyncio.gather(*pending, return_exceptions=True)
