"""The webhook feature's pure parts: the JSON mapping (both ways), the reply to a webhook's answer,
which stanzas are posted, the URL fields, the signature, the error table's HTTP direction."""

from __future__ import annotations

import hashlib
import hmac
import json
from xml.etree import ElementTree as ET

import pytest

from tigase_rest import config as config_mod
from tigase_rest.errors import HTTP_TO_XMPP, XMPP_TO_HTTP, HttpError, condition_for_status
from tigase_rest.features.webhooks import stanzas
from tigase_rest.features.webhooks.request import posted_stanza, shortcut_iq
from tigase_rest.features.webhooks.service import Webhooks
from tigase_rest.features.webhooks.store import QueueStore
from tigase_rest.xmpp.stanzas import serialize

C = "jabber:client"


def xml(text: str) -> ET.Element:
    return ET.fromstring(text)


def canonical(element: ET.Element) -> str:
    return serialize(element, C)


@pytest.mark.parametrize("text, data", [
    ("<message xmlns='jabber:client' type='chat' to='echo@http.localhost' from='a@localhost/r' id='1'>"
     "<body>hi</body><subject>s</subject><thread>t</thread></message>",
     {"kind": "message", "type": "chat", "to": "echo@http.localhost", "from": "a@localhost/r", "id": "1",
      "body": "hi", "subject": "s", "thread": "t"}),
    ("<message xmlns='jabber:client'><x xmlns='jabber:x:oob'><url>https://e.com/a</url></x></message>",
     {"kind": "message", "oob_url": "https://e.com/a"}),
    ("<presence xmlns='jabber:client'><show>away</show><status>out</status><priority>-1</priority></presence>",
     {"kind": "presence", "show": "away", "status": "out", "priority": -1}),
    ("<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
     {"kind": "iq", "type": "get", "id": "p", "ping": True}),
    ("<iq xmlns='jabber:client' type='get'><query xmlns='http://jabber.org/protocol/disco#info' node='n'/></iq>",
     {"kind": "iq", "type": "get", "disco": {"node": "n"}}),
    ("<iq xmlns='jabber:client' type='result'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<identity category='server' type='im' name='P'/><feature var='urn:xmpp:ping'/></query></iq>",
     {"kind": "iq", "type": "result", "disco": {"identities": [{"category": "server", "type": "im", "name": "P"}],
                                                "features": ["urn:xmpp:ping"]}}),
    ("<iq xmlns='jabber:client' type='get'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
     {"kind": "iq", "type": "get", "items": True}),
    ("<iq xmlns='jabber:client' type='result'><query xmlns='http://jabber.org/protocol/disco#items'>"
     "<item jid='a.localhost' name='A'/><item jid='b' node='n'/></query></iq>",
     {"kind": "iq", "type": "result", "items": [{"jid": "a.localhost", "name": "A"}, {"jid": "b", "node": "n"}]}),
    ("<iq xmlns='jabber:client' type='result'><query xmlns='jabber:iq:version'><name>P</name><version>1</version>"
     "</query></iq>", {"kind": "iq", "type": "result", "version": {"name": "P", "version": "1"}}),
    ("<iq xmlns='jabber:client' type='error'><error type='cancel'>"
     "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
     "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text></error></iq>",
     {"kind": "iq", "type": "error", "error": {"type": "cancel", "condition": "item-not-found", "text": "gone"}}),
], ids=["message", "oob", "presence", "ping", "disco-get", "disco-result", "items-get", "items-result",
        "version", "error"])
def test_the_keys_say_it_all_and_map_back_to_the_same_stanza(text, data):
    stanza = xml(text)
    assert stanzas.to_json(stanza) == data
    assert canonical(stanzas.from_json(data)) == canonical(stanza)


def test_html_is_the_xhtml_body_and_a_fragment_is_wrapped():
    stanza = stanzas.from_json({"body": "hi", "html": "<p>hi <b>there</b></p>"})
    data = stanzas.to_json(stanza)
    assert data["html"] == '<body xmlns="http://www.w3.org/1999/xhtml"><p>hi <b>there</b></p></body>'
    assert "xml" not in data and canonical(stanzas.from_json(data)) == canonical(stanza)


def test_what_the_keys_cannot_say_travels_as_xml_and_nothing_is_lost():
    text = ("<message xmlns='jabber:client' type='chat' to='b@http.localhost'><body>hi</body>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/></message>")
    data = stanzas.to_json(xml(text))
    assert data["body"] == "hi" and "chatstates" in data["xml"]
    assert canonical(stanzas.from_json(json.loads(json.dumps(data)))) == canonical(xml(text))
    # Keys beside "xml" replace what they name in it.
    edited = stanzas.from_json({**data, "body": "changed"})
    assert edited.findtext("{jabber:client}body") == "changed" and len(edited.findall("{jabber:client}body")) == 1
    assert edited.find("{http://jabber.org/protocol/chatstates}active") is not None


@pytest.mark.parametrize("data, reason", [
    ([], "expected an object"),
    ({"kind": "stream"}, "'kind' must be"),
    ({"bogus": 1}, "unknown key"),
    ({"body": 5}, "'body' must be a string"),
    ({"kind": "iq", "body": "x"}, "'body' does not belong in a iq"),
    ({"show": "sleeping"}, "'show' must be one of"),
    ({"priority": 500}, "'priority'"),
    ({"type": "get"}, "'type' of a message"),
    ({"ping": True, "version": True}, "not several"),
    ({"ping": "yes"}, "'ping' must be true"),
    ({"body": "a\x00b"}, "character"),
    ({"xml": "<foo/>"}, "'xml' must be"),
    ({"kind": "iq", "xml": "<message xmlns='jabber:client'/>"}, "'kind' is 'iq'"),
])
def test_bad_json_stanzas_are_400_with_the_reason(data, reason):
    with pytest.raises(HttpError) as error:
        stanzas.from_json(data)
    assert error.value.status == 400 and reason in error.value.reason


def test_the_kind_follows_from_the_keys():
    assert stanzas.from_json({"version": True}).tag == f"{{{C}}}iq"
    assert stanzas.from_json({"version": True}).get("type") == "get"
    assert stanzas.from_json({"status": "x"}).tag == f"{{{C}}}presence"
    assert stanzas.from_json({"body": "x"}).tag == f"{{{C}}}message"


# --- the reply to a webhook's answer ------------------------------------------------------------

MSG = xml("<message xmlns='jabber:client' type='chat' id='m1' to='echo@http.localhost' from='a@localhost/r'>"
          "<body>hi</body></message>")
IQ = xml("<iq xmlns='jabber:client' type='get' id='q1' to='bot@http.localhost/x' from='a@localhost/r'>"
         "<ping xmlns='urn:xmpp:ping'/></iq>")


def test_a_json_answer_is_the_reply_from_the_bot_to_the_sender_whatever_its_envelope():
    body = json.dumps({"body": "echo", "to": "mallory@localhost", "from": "admin@localhost"}).encode()
    reply = stanzas.reply_for(MSG, 200, "application/json", body)
    assert (reply.get("to"), reply.get("from"), reply.get("type")) == ("a@localhost/r", "echo@http.localhost", "chat")
    assert reply.findtext(f"{{{C}}}body") == "echo"


def test_text_and_xml_answers():
    reply = stanzas.reply_for(MSG, 200, "text/plain; charset=utf-8", "h\u00e9".encode())
    assert reply.findtext(f"{{{C}}}body") == "h\u00e9" and reply.get("type") == "chat"
    reply = stanzas.reply_for(IQ, 200, "application/xmpp+xml",
                              b"<iq type='result' id='other'><query xmlns='jabber:iq:version'/></iq>")
    assert (reply.get("id"), reply.get("to"), reply.get("from")) == ("q1", "a@localhost/r", "bot@http.localhost/x")


def test_an_iq_always_gets_one_reply():
    assert stanzas.reply_for(IQ, 204, "", b"").get("type") == "result"
    assert stanzas.reply_for(IQ, 200, "", b"").get("type") == "result"
    wrong = stanzas.reply_for(IQ, 200, "application/json", b'{"body": "not an iq"}')
    assert wrong.get("type") == "error" and wrong.find(".//{*}internal-server-error") is not None
    assert stanzas.reply_for(MSG, 204, "", b"") is None


@pytest.mark.parametrize("status, condition", [(400, "bad-request"), (403, "forbidden"), (404, "item-not-found"),
                                               (500, "internal-server-error"), (503, "service-unavailable"),
                                               (418, "bad-request"), (599, "internal-server-error")])
def test_an_error_status_is_the_xmpp_error_of_mod_rest_table(status, condition):
    reply = stanzas.reply_for(IQ, status, "text/plain", b"secret detail")
    assert reply.get("type") == "error" and reply.get("id") == "q1"
    assert reply.find(f".//{{urn:ietf:params:xml:ns:xmpp-stanzas}}{condition}") is not None
    assert b"secret detail" not in ET.tostring(reply)


def test_errors_are_never_answered_and_presence_gets_no_error():
    error = xml("<message xmlns='jabber:client' type='error' to='b@http.localhost' from='a@localhost'/>")
    assert stanzas.reply_for(error, 200, "text/plain", b"hi") is None
    assert stanzas.reply_for(error, 500, "", b"") is None
    assert stanzas.reply_for(xml("<presence xmlns='jabber:client' from='a@localhost' to='b@http.localhost'/>"),
                             500, "", b"") is None


def test_the_http_direction_of_the_error_table_round_trips():
    for status, condition in HTTP_TO_XMPP.items():
        if status not in (401, 408, 413, 429, 502):  # statuses the XMPP->HTTP direction does not produce
            assert XMPP_TO_HTTP[condition] == status, (status, condition)
    assert condition_for_status(302) == "undefined-condition"


# --- what is posted -----------------------------------------------------------------------------


@pytest.mark.parametrize("to, form", [("http.localhost", "host"), ("http.localhost/r", "host"),
                                      ("bot@http.localhost", "bare"), ("bot@HTTP.localhost/r", "full"),
                                      ("bot@localhost", None), ("localhost", None)])
def test_address_forms(to, form):
    assert stanzas.address_form(to, "http.localhost") == form


@pytest.mark.parametrize("text, own", [
    ("<iq type='result' to='http.localhost' from='a@localhost'/>", True),
    ("<message to='http.localhost' from='localhost'><privilege xmlns='urn:xmpp:privilege:2'/></message>", True),
    ("<iq type='get' to='http.localhost' from='a@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
     True),
    ("<iq type='get' to='bot@http.localhost' from='a@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/>"
     "</iq>", False),
    ("<iq type='get' to='http.localhost' from='a@localhost'><ping xmlns='urn:xmpp:ping'/></iq>", False),
    ("<message to='http.localhost' from='a@localhost'><body>x</body></message>", False),
])
def test_the_components_own_work(text, own):
    assert stanzas.is_component_work(xml(text), "localhost", presence_forwarded=False) is own


def test_presence_to_the_component_is_its_own_when_the_server_forwards_presences():
    presence = xml("<presence to='http.localhost' from='a@localhost/r'/>")
    assert stanzas.is_component_work(presence, "localhost", presence_forwarded=True)
    assert not stanzas.is_component_work(presence, "localhost", presence_forwarded=False)


def make_webhooks(tmp_path, **values) -> Webhooks:
    config = config_mod.WebhooksConfig(**{"url": "http://h/{kind}/{type}/{to}?f={from}", **values})
    return Webhooks(config, "http.localhost", "localhost", None, None,  # type: ignore[arg-type]
                    QueueStore(tmp_path / "q.sqlite3"), 1000)


def test_url_fields_are_percent_encoded(tmp_path):
    hooks = make_webhooks(tmp_path)
    assert hooks.url_for(MSG) == "http://h/message/chat/echo%40http.localhost?f=a%40localhost%2Fr"
    presence = xml("<presence xmlns='jabber:client' to='b@http.localhost' from='a@localhost'/>")
    assert hooks.url_for(presence) == "http://h/presence/available/b%40http.localhost?f=a%40localhost"


def test_the_signature_is_hmac_sha256_of_the_body(tmp_path):
    hooks = make_webhooks(tmp_path, secret="k")
    body = hooks.encode(MSG)
    assert json.loads(body)["body"] == "hi"
    assert hooks.signature(body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert make_webhooks(tmp_path, content_type="application/xmpp+xml").encode(MSG).startswith(b"<message")


def test_the_queue_store_keeps_order_across_reopening(tmp_path):
    store = QueueStore(tmp_path / "q.sqlite3")
    first, second = store.add("a", "<message/>", 1.0), store.add("b", "<presence/>", 2.0)
    second.attempts = 3
    store.attempted(second)
    store.close()
    store = QueueStore(tmp_path / "q.sqlite3")
    assert [(e.delivery_id, e.attempts) for e in store.load()] == [("a", 0), ("b", 3)]
    store.delete(first)
    assert [e.delivery_id for e in store.load()] == ["b"]


# --- HTTP input ---------------------------------------------------------------------------------


def test_posted_bodies():
    message, fmt = posted_stanza(b"hello", "text/plain; charset=utf-8", "a@localhost")
    assert message.findtext(f"{{{C}}}body") == "hello" and message.get("type") == "chat" and fmt is None
    stanza, fmt = posted_stanza(b"<message xmlns='jabber:client'/>", "text/plain", None)  # Tigase: XML whatever the type
    assert stanza.tag.endswith("message")
    stanza, fmt = posted_stanza(b"<iq xmlns='jabber:client' type='get'/>", "application/json", None)
    assert stanza.tag.endswith("iq") and fmt is None  # XML labelled JSON (to get JSON errors): still XML
    stanza, fmt = posted_stanza(b'{"kind": "iq", "ping": true}', "application/json", None)
    assert fmt == "json" and stanza.get("type") == "get"
    with pytest.raises(HttpError, match="JID in the URL"):
        posted_stanza(b"hello", "text/plain", None)


def test_shortcut_iqs():
    iq = shortcut_iq("items", "Example.COM", "n1")
    assert (iq.get("to"), iq[0].get("node"), iq.get("type")) == ("example.com", "n1", "get")
    assert shortcut_iq("ping", "example.com")[0].tag == "{urn:xmpp:ping}ping"
    with pytest.raises(HttpError, match="'node' is a parameter"):
        shortcut_iq("ping", "example.com", "n")


# --- config -------------------------------------------------------------------------------------


def base(**webhooks):
    return {"xmpp": {"secret": "s"}, "http": {"scripts_dir": "scripts/rest"}, "webhooks": webhooks}


def test_webhooks_config_defaults_and_env(monkeypatch):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    cfg = config_mod.from_dict(base(), {"TIGASE_REST_WEBHOOKS_STANZAS": "message, iq"}, root)
    assert cfg.webhooks.url == "" and cfg.webhooks.stanzas == ("message", "iq")
    assert cfg.webhooks.events == ("bare", "full", "host") and cfg.webhooks.content_type == "application/json"


@pytest.mark.parametrize("values, message", [
    ({"url": "ftp://x"}, "http(s) URL"),
    ({"url": "http://x/{nope}"}, "unknown field {nope}"),
    ({"url": "http://x/{"}, "webhooks.url"),
    ({"content_type": "text/plain"}, "webhooks.content_type"),
    ({"stanzas": ["iq", "stream"]}, "webhooks.stanzas"),
    ({"events": ["domain"]}, "webhooks.events"),
    ({"timeout": 0}, "webhooks.timeout"),
    ({"max_queue": 0}, "webhooks.max_queue"),
])
def test_bad_webhooks_config_is_refused_with_the_key(values, message):
    from pathlib import Path
    with pytest.raises(config_mod.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}")):
        config_mod.from_dict(base(**values), {}, Path(__file__).resolve().parents[2])
