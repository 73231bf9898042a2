"""HTTP input for bots: a stanza posted as XML, JSON or plain text, and the GET shortcuts' IQs."""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement

from ...coding import JSON, check_xml_text, data_to_json, parse_json, parse_xml
from ...errors import HttpError
from ...xmpp.stanzas import CLIENT_NS, STANZA_NAMES, parse_jid, renamespace, serialize, split_tag
from . import stanzas

SHORTCUTS = ("ping", "version", "disco", "items")


def posted_stanza(body: bytes, content_type: str | None, to: str | None) -> tuple[Element, str | None]:
    """The stanza a POST body describes, and the body's format (JSON, or None for XML and text).

    ``application/json``: a JSON stanza (stanzas.from_json); ``text/plain``: the body of a chat
    message to the JID in the URL; anything else, or a body that starts with "<": one XML stanza. 400 with the reason otherwise."""
    media = (content_type or "").split(";")[0].strip().lower()
    if not body.strip():
        raise HttpError(400, "No data received: the body must be one XMPP stanza (XML or JSON) or a text")
    # A body that starts with "<" is XML whatever its label: Tigase reads any body as XML, and
    # clients label it text/plain or JSON (to get JSON errors). A chat text starting with "<" goes as JSON.
    xml_body = body.lstrip()[:1] == b"<"
    if media == "text/plain" and not xml_body:
        if not to:
            raise HttpError(400, "A text/plain body is a chat message to the JID in the URL: POST /stream/<jid>")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HttpError(400, f"Request body is not valid UTF-8 (byte {e.start})") from None
        message = Element(f"{{{CLIENT_NS}}}message", {"type": "chat"})
        SubElement(message, f"{{{CLIENT_NS}}}body").text = check_xml_text(text, "the text")
        return message, None
    if "json" in media and not xml_body:
        return stanzas.from_json(parse_json(body)), JSON
    stanza = parse_xml(body)
    ns, name = split_tag(stanza.tag)
    if name not in STANZA_NAMES or ns not in ("", CLIENT_NS, "jabber:component:accept"):
        raise HttpError(400, f"Not a stanza: <{name}> in namespace {ns or 'none'!r}; "
                             f"send <message>, <presence> or <iq> in jabber:client")
    return stanza, None


def shortcut_iq(what: str, jid: str, node: str | None = None) -> Element:
    """The IQ get of ``GET /rest/<what>/<jid>``: ping, version, disco (info) or items."""
    if what not in SHORTCUTS:
        raise HttpError(404, f"No shortcut {what!r} (known: {', '.join(SHORTCUTS)})")
    if node is not None and what not in ("disco", "items"):
        raise HttpError(400, f"'node' is a parameter of disco and items, not of {what}")
    data = {"kind": "iq", "type": "get", "to": str(parse_jid(jid, "the URL")),
            what: {"node": check_xml_text(node, "'node'")} if node else True}
    return stanzas.from_json(data)


def stanza_answer(stanza: Element, fmt: str) -> tuple[bytes, str]:
    """A stanza as an HTTP answer body: the JSON mapping, or XML (jabber:client)."""
    if fmt == JSON:
        return data_to_json(stanzas.to_json(stanza)).encode("utf-8"), "application/json; charset=utf-8"
    return serialize(renamespace(stanza, CLIENT_NS)).encode("utf-8"), "application/xml; charset=utf-8"
