"""Stanza helpers shared by the component link and the caller sessions: namespaces, errors, JIDs."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from slixmpp.jid import JID, InvalidJID

from ..errors import HttpError, from_xmpp_error

CLIENT_NS = "jabber:client"
COMPONENT_NS = "jabber:component:accept"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STANZA_NAMES = ("message", "presence", "iq")
_STREAM_NAMESPACES = ("", CLIENT_NS, COMPONENT_NS)


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, name = tag[1:].split("}", 1)
        return ns, name
    return "", tag


def renamespace(element: Element, namespace: str) -> Element:
    """Move the stanza and its children in a stream namespace (none, jabber:client or
    jabber:component:accept) to ``namespace``, in place. Payload namespaces are untouched."""
    stack = [element]
    while stack:
        node = stack.pop()
        ns, name = split_tag(node.tag)
        if ns in _STREAM_NAMESPACES:
            node.tag = f"{{{namespace}}}{name}" if namespace else name
            stack.extend(node)
    return element


def error_of(stanza: Element) -> tuple[str | None, str | None]:
    """(condition, text) of a stanza's <error/>, tolerant of a missing or odd namespace."""
    for child in stanza:
        if split_tag(child.tag)[1] != "error":
            continue
        condition = text = None
        for part in child:
            name = split_tag(part.tag)[1]
            if name == "text":
                text = (part.text or "").strip() or None
            elif condition is None:  # the defined condition comes first (RFC 6120 8.3.2)
                condition = name
        return condition, text
    return None, None


def parse_jid(value: str, what: str) -> JID:
    """A JID normalised as XMPP does (stringprep/PRECIS via slixmpp); 400 when invalid."""
    try:
        jid = JID(value)
    except InvalidJID as e:
        raise HttpError(400, f"Invalid JID in {what}: {value!r} ({e})") from None
    if not jid.domain:
        raise HttpError(400, f"Invalid JID in {what}: {value!r} (no domain)")
    return jid


def parse_bare_jid(value: str, what: str) -> JID:
    jid = parse_jid(value, what)
    if not jid.user or jid.resource:
        raise HttpError(400, f"{what} must be a bare JID like user@domain, not {value!r}")
    return jid


def raise_for_error(reply: Element, who: str) -> Element:
    """The reply itself when it is a result; the mapped HttpError when it is an error."""
    if reply.get("type") == "error":
        condition, text = error_of(reply)
        raise from_xmpp_error(condition, text, who)
    return reply
