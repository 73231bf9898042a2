"""POST /rest/stream against a real server, with a real client on the receiving end.

The stanzas are the reference documentation's examples (section 2.2.6), with the domain
example.com replaced by the test server's domain. Portable tests hold on Prosody and ejabberd.
"""

from __future__ import annotations

import asyncio
import time
from xml.etree import ElementTree

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rest import ADMIN, ALICE, KEY, basic, call

XML = {**KEY, "Content-Type": "application/xml"}
# Every test here holds on Prosody and on ejabberd.
pytestmark = pytest.mark.portable

CLIENT_NS = "{jabber:client}"
STANZAS_NS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"

EXAMPLE_1 = """<message xmlns="jabber:client" type="chat" to="test@localhost/resource-1">
    <body>Example message 1</body>
</message>"""
EXAMPLE_2 = """<message xmlns="jabber:client" type="chat" to="test@localhost">
    <body>Example message 2</body>
</message>"""
EXAMPLE_3 = """<message xmlns="jabber:client" type="chat" from="sender@example.com" to="test@localhost/resource-1">
    <body>Example message 1</body>
</message>"""


async def post(component, body, *, path="/rest/stream/", auth=ADMIN, headers=XML):
    # headers replace the default key: the access tests send none or a wrong one
    answer = await call(component, "POST", path, body=body, auth=auth, headers={"Api-Key": None, **headers})
    return answer.status, answer.headers, answer.text


async def health(component):
    answer = await call(component, "GET", "/rest/health?type=application/json", auth=None)
    return answer.status, answer.json()["health"]


async def received(client, component):
    """The client's next message; on a timeout, fail with what the component logged about the link."""
    try:
        return await client.next_message()
    except asyncio.TimeoutError:
        pass
    lines = [line for line in component.log_text().splitlines() if "tigase_rest.xmpp.component" in line]
    pytest.fail("no message within 5 s; the component's link log:\n" + "\n".join(lines[-8:]))


async def test_health_is_200_once_linked_to_the_server(component):
    status, report = await health(component)
    assert status == 200
    assert report["xmpp_link"] == "up" and report["component_jid"] == "http.localhost"
    assert report["link_connects"] == 1 and report["failed_scripts"] == 0


@pytest.mark.parametrize("example, sender, body", [
    (EXAMPLE_1, "http.localhost", "Example message 1"),
    (EXAMPLE_2, "http.localhost", "Example message 2"),
    (EXAMPLE_3, "sender@example.com", "Example message 1"),  # validate_from_addresses / check_from off
], ids=["to-full-jid", "to-bare-jid", "with-foreign-from"])
async def test_reference_examples_reach_the_client(component, xmpp_client, example, sender, body):
    test = await xmpp_client("test", resource="resource-1")
    status, _, text = await post(component, example)
    assert (status, text) == (200, "")
    message = await received(test, component)
    assert (message["body"], message["from"].bare, message["type"]) == (body, sender, "chat")
    # The link must survive the post: ejabberd closes a component stream that sends a stanza
    # without 'from' (improper-addressing), and a reconnect would show as a second connect.
    status, report = await health(component)
    assert (status, report["link_connects"]) == (200, 1), component.log_text()[-3000:]


async def test_stanza_without_from_leaves_the_link_up_for_the_next_request(component, xmpp_client):
    test = await xmpp_client("test", resource="resource-1")
    assert (await post(component, EXAMPLE_2))[0] == 200
    # At once, on the same link: a dropped link answers 503 (or loses the message) here.
    status, _, text = await post(component, EXAMPLE_3)
    assert status == 200, text
    bodies = set()
    for _ in range(2):
        bodies.add((await received(test, component))["body"])
    assert bodies == {"Example message 1", "Example message 2"}


async def test_admin_role_from_the_server_alone(component_factory):
    # No [auth] admins: who is an admin is what the server offers each caller's session
    # (Prosody's admins, ejabberd's acl: admin).
    component = component_factory(auth={"admins": None})
    status, _, text = await post(component, EXAMPLE_2, auth=ALICE)
    assert status == 403
    assert "alice@localhost is not an admin" in text
    status, _, text = await post(component, '<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>')
    assert status == 200 and 'type="result"' in text


async def test_api_key_as_query_parameter_and_to_from_the_url(component, xmpp_client):
    bob = await xmpp_client("bob", resource="desk")
    stanza = '<message type="chat" to="nobody@localhost"><body>via URL</body></message>'
    status, _, _ = await post(component, stanza, path="/rest/stream/bob@localhost/desk?api-key=test-key",
                              headers={"Content-Type": "application/xml"})
    assert status == 200
    message = await bob.next_message()
    assert (message["body"], str(message["to"])) == ("via URL", "bob@localhost/desk")


async def test_iq_without_from_returns_the_reply(component):
    status, headers, text = await post(
        component, '<iq type="get" to="localhost" id="ping-1"><ping xmlns="urn:xmpp:ping"/></iq>')
    assert status == 200
    assert headers["Content-Type"] == "application/xml; charset=utf-8"
    reply = ElementTree.fromstring(text)
    assert reply.tag == CLIENT_NS + "iq"
    assert (reply.get("type"), reply.get("id"), reply.get("from")) == ("result", "ping-1", "localhost")


async def test_iq_error_reply_is_returned_with_200_as_tigase(component, xmpp_server):
    status, _, text = await post(
        component, '<iq type="get" to="localhost"><query xmlns="urn:example:unknown"/></iq>')
    assert status == 200
    # ejabberd writes the component's <error/> in jabber:component:accept; the API answers jabber:client.
    reply = ElementTree.fromstring(text)
    assert (reply.tag, reply.get("type")) == (CLIENT_NS + "iq", "error")
    error = reply.find(CLIENT_NS + "error")
    assert error is not None and error.find(STANZAS_NS + "service-unavailable") is not None
    assert error.findtext(STANZAS_NS + "text") == xmpp_server.unknown_iq_error_text


async def test_iq_timeout_is_504(component_factory, xmpp_client):
    component = component_factory(xmpp={"iq_timeout": 1})
    bob = await xmpp_client("bob", resource="silent")
    # Bob's client takes this IQ and never answers it (a handled stanza gets no automatic error).
    bob.xmpp.register_handler(Callback("swallow", MatchXPath("{jabber:client}iq/{urn:example:silent}q"), lambda _: None))
    started = time.monotonic()
    status, _, text = await post(
        component, '<iq type="get" to="bob@localhost/silent"><q xmlns="urn:example:silent"/></iq>',
        headers={**KEY, "Content-Type": "application/json"})
    assert status == 504
    assert "remote-server-timeout" in text and "bob@localhost/silent" in text
    assert 0.9 < time.monotonic() - started < 5


@pytest.mark.parametrize("auth, headers, status, reason", [
    (None, XML, 401, "Authentication required"),
    (ADMIN, {"Content-Type": "application/xml"}, 403, "Missing required 'Api-Key'"),
    (ADMIN, {**XML, "Api-Key": "wrong"}, 403, "not authorized to access /rest/stream/"),
    (basic("alice@localhost", "alicepass"), XML, 403, "alice@localhost is not an admin"),
    (basic("admin@localhost", "wrong"), XML, 401, "Invalid credentials"),
])
async def test_access_is_refused_with_the_reason(component, auth, headers, status, reason):
    got, response_headers, text = await post(component, EXAMPLE_2, auth=auth, headers=headers)
    assert got == status
    assert reason in text
    if status == 401:
        assert response_headers["WWW-Authenticate"].startswith('Basic realm="TigasePlain"')


@pytest.mark.parametrize("body, reason", [
    ("", "No data received"),
    ("<message to='bob@localhost'><body>unclosed</message>", "Malformed XML"),
    ("<presence to='bob@localhost'/><presence to='bob@localhost'/>", "Malformed XML"),
    ("<foo to='bob@localhost'/>", "Not a stanza"),
    ("<iq type='result' to='localhost'/>", "type get or set"),
    ("<message><body>nowhere</body></message>", "has no 'to'"),
])
async def test_bad_bodies_are_400_with_the_reason(component, body, reason):
    status, _, text = await post(component, body)
    assert status == 400
    assert reason in text


async def test_body_over_the_limit_is_413(component_factory):
    component = component_factory(http={"max_body_bytes": 1024})
    status, _, text = await post(component, "<message to='bob@localhost'><body>" + "x" * 2000 + "</body></message>")
    assert status == 413
    assert "larger than 1024" in text


async def test_server_down_gives_503_then_the_component_reconnects(xmpp_server, component, xmpp_client):
    status, _, _ = await post(component, EXAMPLE_2)  # logs the admin in while the server is up
    assert status == 200
    xmpp_server.kill()
    try:
        # The component learns of the death when the kernel's reset reaches its loop: a request in
        # that window can still be written into the dead socket (seen once with ejabberd). Wait for it.
        deadline = time.monotonic() + 5
        while (await call(component, "GET", "/rest/health?type=application/json")).status != 503:
            assert time.monotonic() < deadline, "the component did not notice the server's death in 5 s"
            await asyncio.sleep(0.05)
        status, headers, text = await post(component, EXAMPLE_2)
        assert status == 503
        assert headers["Retry-After"].isdigit()
        # The admin's pooled session went down with the server, and its cached credential with it
        # (a server-ended session may mean a changed password): the login is tried again first.
        assert "link is down" in text or "Cannot reach the XMPP server's c2s port" in text, text
    finally:
        await asyncio.to_thread(xmpp_server.start)  # same ports; users are kept (ejabberd: restored)
    bob = await xmpp_client("bob", resource="after-restart")
    deadline = time.monotonic() + 20
    while True:  # the component reconnects on its own, with backoff
        status, _, _ = await post(component, '<message to="bob@localhost/after-restart"><body>back</body></message>')
        if status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert status == 200
    assert (await bob.next_message())["body"] == "back"
    assert component.process.poll() is None  # never restarted
