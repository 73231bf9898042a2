"""POST /rest/stream/[to]: any stanza over the component link (reference section 2.2.6)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fakes import ADMIN, API_KEY, COMPONENT_JID, admin_headers, basic
from tigase_rest import errors

CLIENT = "{jabber:client}"

# The three examples of tigase-rest-api.rst 2.2.6, byte for byte (the third one's body text says
# "Example message 1" in the reference too).
EXAMPLE_1 = b"""<message xmlns="jabber:client" type="chat" to="test@example.com/resource-1">
    <body>Example message 1</body>
</message>"""
EXAMPLE_2 = b"""<message xmlns="jabber:client" type="chat" to="test@example.com">
    <body>Example message 2</body>
</message>"""
EXAMPLE_3 = b"""<message xmlns="jabber:client" type="chat" from="sender@example.com" to="test@example.com/resource-1">
    <body>Example message 1</body>
</message>"""

VERSION_IQ = b"<iq xmlns='jabber:client' type='get' id='v1' to='example.com'><query xmlns='jabber:iq:version'/></iq>"


def reply_to(iq: ET.Element, payload: str = "<query xmlns='jabber:iq:version'><name>Prosody</name></query>",
             kind: str = "result") -> ET.Element:
    """What the server answers, as the link hands it over (component namespace, the caller's id)."""
    return ET.fromstring(
        f"<iq xmlns='jabber:component:accept' type='{kind}' id='{iq.get('id')}' from='{iq.get('to')}' "
        f"to='{COMPONENT_JID}'>{payload}</iq>")


async def post(api, body: bytes, path: str = "/rest/stream/", **headers):
    return await api.post(path + ("&" if "?" in path else "?") + f"api-key={API_KEY}", data=body,
                          headers={k: v for k, v in admin_headers(**headers).items() if k != "Api-Key"})


def error_reason(text: str) -> str:
    return ET.fromstring(text).findtext("reason")


# --- the reference examples -------------------------------------------------------------------


@pytest.mark.parametrize("body, to, sender, text", [
    (EXAMPLE_1, "test@example.com/resource-1", None, "Example message 1"),
    (EXAMPLE_2, "test@example.com", None, "Example message 2"),
    (EXAMPLE_3, "test@example.com/resource-1", "sender@example.com", "Example message 1"),
])
async def test_reference_message_examples(api, body, to, sender, text):
    response = await post(api, body)
    assert response.status == 200
    assert await response.text() == ""
    assert api.link.requests == []
    [sent] = api.link.sent
    assert sent.tag == CLIENT + "message"
    assert sent.get("type") == "chat"
    assert sent.get("to") == to
    assert sent.get("from") == sender  # absent: the component's JID is used; set: kept as is
    assert sent.findtext(CLIENT + "body") == text


async def test_url_to_overrides_the_stanza_to(api):
    response = await post(api, EXAMPLE_1, "/rest/stream/bob@example.com/phone")
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com/phone"


async def test_url_to_is_percent_decoded(api):
    response = await post(api, EXAMPLE_2, "/rest/stream/bob%40example.com")
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com"


async def test_url_to_supplies_a_missing_to(api):
    response = await post(api, b"<presence xmlns='jabber:client' type='probe'/>", "/rest/stream/bob@example.com")
    assert response.status == 200
    assert (api.link.sent[0].tag, api.link.sent[0].get("to")) == (CLIENT + "presence", "bob@example.com")


async def test_jids_are_normalised(api):
    response = await post(api, b"<message xmlns='jabber:client' to='Bob@Example.COM/Res'><body>x</body></message>")
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com/Res"


async def test_stanza_without_namespace_is_accepted(api):
    response = await post(api, b"<message to='bob@example.com'><body>x</body></message>")
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com"


async def test_any_content_type_is_read_as_xml(api):
    response = await post(api, EXAMPLE_2, **{"Content-Type": "text/plain"})
    assert response.status == 200
    assert len(api.link.sent) == 1


async def test_utf8_body_text_arrives_intact(api):
    body = "<message xmlns='jabber:client' to='bob@example.com'><body>h\u00e9llo \u2603 \U0001f600</body></message>"
    response = await post(api, body.encode("utf-8"))
    assert response.status == 200
    assert api.link.sent[0].findtext(CLIENT + "body") == "h\u00e9llo \u2603 \U0001f600"


# --- IQs ----------------------------------------------------------------------------------------


async def test_iq_without_from_returns_the_reply(api):
    api.link.reply = reply_to
    response = await post(api, VERSION_IQ)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    reply = ET.fromstring(await response.text())
    assert reply.tag == CLIENT + "iq"
    assert (reply.get("type"), reply.get("id"), reply.get("from")) == ("result", "v1", "example.com")
    assert reply.findtext("{jabber:iq:version}query/{jabber:iq:version}name") == "Prosody"
    [(sent, _timeout)] = api.link.requests
    assert (sent.get("to"), sent.get("type")) == ("example.com", "get")
    assert sent.find("{jabber:iq:version}query") is not None
    assert api.link.sent == []


async def test_error_iq_reply_is_200_as_tigase(api):
    api.link.reply = lambda iq: reply_to(
        iq, "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>", "error")
    response = await post(api, VERSION_IQ)
    assert response.status == 200
    reply = ET.fromstring(await response.text())
    assert reply.get("type") == "error"
    assert reply.find(f"{CLIENT}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}item-not-found") is not None


async def test_iq_with_from_is_fire_and_forget(api):
    body = b"<iq xmlns='jabber:client' type='get' id='p1' from='admin@example.com' to='example.com'>" \
           b"<ping xmlns='urn:xmpp:ping'/></iq>"
    response = await post(api, body)
    assert response.status == 200
    assert await response.text() == ""
    assert api.link.requests == []
    assert api.link.sent[0].get("from") == "admin@example.com"


async def test_link_down_is_503_with_retry_after(api):
    api.link.connected = False
    for body in (EXAMPLE_1, VERSION_IQ):
        response = await post(api, body)
        assert response.status == 503
        assert response.headers["Retry-After"].isdigit()
        root = ET.fromstring(await response.text())
        assert root.findtext("condition") == "service-unavailable"
        assert "link is down" in root.findtext("reason")


async def test_timeout_is_504(api):
    api.link.reply = errors.timeout("example.com", 5)
    response = await post(api, VERSION_IQ)
    assert response.status == 504
    root = ET.fromstring(await response.text())
    assert root.findtext("reason") == "No answer from example.com within 5 s"
    assert root.findtext("condition") == "remote-server-timeout"


# --- refused bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("body, path, needle", [
    (b"", "/rest/stream/", "No data received"),
    (b"  \r\n\t ", "/rest/stream/", "No data received"),
    (b"<message to='bob@example.com'><body>x</message>", "/rest/stream/", "Malformed XML"),
    (b"just text", "/rest/stream/", "Malformed XML"),
    (b"<foo to='bob@example.com'/>", "/rest/stream/", "Not a stanza: <foo>"),
    (b"<message xmlns='urn:example' to='bob@example.com'/>", "/rest/stream/", "Not a stanza"),
    (b"<message to='a@example.com'/><message to='b@example.com'/>", "/rest/stream/", "Malformed XML"),
    (b"<iq xmlns='jabber:client' type='result' id='1' to='example.com'/>", "/rest/stream/", "get or set"),
    (b"<iq xmlns='jabber:client' type='get' id='1' to='example.com'><a xmlns='x'/><b xmlns='y'/></iq>",
     "/rest/stream/", "exactly one child"),
    (b"<iq xmlns='jabber:client' type='get' id='1' to='example.com'/>", "/rest/stream/", "exactly one child"),
    (b"<message xmlns='jabber:client'><body>x</body></message>", "/rest/stream/", "no 'to'"),
    (b"<message xmlns='jabber:client' to=''><body>x</body></message>", "/rest/stream/", "no 'to'"),
    (EXAMPLE_1, "/rest/stream/a@b@c", "Invalid JID in the URL"),
    (EXAMPLE_1, "/rest/stream/@example.com", "Invalid JID in the URL"),
    (b"<message to='bob@exa mple.com'/>", "/rest/stream/", "Invalid JID in the 'to' attribute"),
    (b"<message to='bob@example.com' from='@example.com'/>", "/rest/stream/", "Invalid JID in the 'from' attribute"),
    (b"<!DOCTYPE message [<!ENTITY x 'y'>]><message to='bob@example.com'><body>&x;</body></message>",
     "/rest/stream/", "DTD"),
    (b"<?xml version='1.0'?><!DOCTYPE m [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
     b"<message to='bob@example.com'><body>&xxe;</body></message>", "/rest/stream/", "DTD"),
    (b"<message to='bob@example.com'><body>&undefined;</body></message>", "/rest/stream/", "Malformed XML"),
    (b"<?xml version='1.0' encoding='UTF-7'?><message to='bob@example.com'><body>+AGE-</body></message>",
     "/rest/stream/", "encoding that is not supported"),
    (b"<?xml version='1.0' encoding='Shift_JIS'?><message to='bob@example.com'><body>\x82\xa0</body></message>",
     "/rest/stream/", "send UTF-8"),
    (b"<?xml version='1.0' encoding='x-no-such'?><message to='bob@example.com'/>", "/rest/stream/", "send UTF-8"),
])
async def test_bad_bodies_are_400_and_nothing_is_sent(api, body, path, needle):
    response = await post(api, body, path)
    assert response.status == 400
    reason = error_reason(await response.text())
    assert needle in reason
    assert "root:" not in reason  # never any file content
    assert api.link.sent == [] and api.link.requests == []


async def test_bad_body_error_in_json_when_asked(api):
    response = await post(api, b"<foo/>", "/rest/stream/?type=application/json", **{"Content-Type": "text/plain"})
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert (await response.json())["error"]["reason"].startswith("Not a stanza")


async def test_a_json_number_of_5000_digits_is_400_with_the_reason(make_api):
    api = await make_api(http={"max_body_bytes": 65536})
    body = b'{"command": {"node": "n", "fields": [{"var": "x", "value": ' + b"9" * 5000 + b"}]}}"
    response = await api.post("/rest/adhoc/example.com", data=body, headers={
        "Api-Key": API_KEY, "Authorization": basic(ADMIN), "Content-Type": "application/json"})
    assert response.status == 400
    assert "more than 4300 digits" in (await response.json())["error"]["reason"]
    assert api.link.sent == [] and api.link.requests == []


@pytest.mark.parametrize("reason", [
    "Cannot reach the XMPP server's c2s port: [Errno 111] Connect call failed ('10.1.2.3', 5999)",
    "Cannot reach the XMPP server's c2s port: Multiple exceptions: [Errno 111] Connect call failed "
    "('fd00::7', 5999, 0, 0), [Errno 111] Connect call failed ('10.1.2.3', 5999)",
    "No answer from the BOSH service at http://10.1.2.3:5999/http-bind within 5 s",
    "Cannot reach the BOSH service at https://10.1.2.3:5999/bosh: Cannot connect to host 10.1.2.3:5999 ssl:default",
])
async def test_a_5xx_names_no_internal_address_but_the_log_does(api, caplog, reason):
    api.link.reply = errors.HttpError(503, reason)
    response = await post(api, b"<iq type='get' to='example.com' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert response.status == 503
    shown = error_reason(await response.text())
    assert "10.1.2.3" not in shown and "5999" not in shown and "fd00" not in shown, shown
    assert "the XMPP server" in shown
    assert "10.1.2.3" in caplog.text  # for the admin
