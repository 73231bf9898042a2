"""Stanzas as small JSON objects, in Prosody mod_rest's keys, and the stanzas a webhook answer becomes.

Pure: no I/O. ``to_json`` and ``from_json`` are inverse for everything the keys can say; what they
cannot (any other payload) travels as the whole stanza's XML under ``"xml"``, so nothing is lost.

    {"kind": "message", "type": "chat", "to": "echo@http.example.com", "from": "alice@example.com/phone",
     "id": "m1", "body": "Hello"}
    {"kind": "iq", "type": "get", "to": "example.com", "disco": true}
    {"kind": "iq", "type": "result", "version": {"name": "Prosody", "version": "0.12.3"}}
"""

from __future__ import annotations

import copy
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from ...coding import check_xml_text, parse_json, parse_xml
from ...errors import HttpError, condition_for_status, error_type_of
from ...xmpp.stanzas import CLIENT_NS, COMPONENT_NS, STANZA_NAMES, STANZAS_NS, renamespace, serialize, split_tag

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
XHTML_IM_NS = "http://jabber.org/protocol/xhtml-im"
XHTML_NS = "http://www.w3.org/1999/xhtml"
OOB_NS = "jabber:x:oob"
PING_NS = "urn:xmpp:ping"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
VERSION_NS = "jabber:iq:version"
_STREAM = ("", CLIENT_NS, COMPONENT_NS)

TYPES = {
    "message": ("normal", "chat", "groupchat", "headline", "error"),
    "presence": ("unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error"),
    "iq": ("get", "set", "result", "error"),
}
SHOWS = ("away", "chat", "dnd", "xa")
ENVELOPE = ("kind", "type", "to", "from", "id", "lang")
# key -> the kinds it belongs to
CONTENT_KEYS = {
    "body": ("message",), "subject": ("message",), "thread": ("message",), "html": ("message",),
    "oob_url": ("message",), "show": ("presence",), "status": ("presence",), "priority": ("presence",),
    "ping": ("iq",), "disco": ("iq",), "items": ("iq",), "version": ("iq",), "error": STANZA_NAMES,
}
XML_KEY = "xml"  # the whole stanza, when the keys cannot say all of it
KEYS = (*ENVELOPE, *CONTENT_KEYS, XML_KEY)
IQ_PAYLOADS = ("ping", "disco", "items", "version")


# --- stanza -> JSON -----------------------------------------------------------------------------


def to_json(stanza: Element) -> dict[str, Any]:
    """The stanza in mod_rest's keys; ``"xml"`` (the whole stanza) when a child does not fit them."""
    kind = split_tag(stanza.tag)[1]
    data: dict[str, Any] = {"kind": kind}
    for attr in ("type", "to", "from", "id"):
        if stanza.get(attr) is not None:
            data[attr] = stanza.get(attr)
    if stanza.get(XML_LANG):
        data["lang"] = stanza.get(XML_LANG)
    complete = set(stanza.attrib) <= {"type", "to", "from", "id", XML_LANG}
    for child in stanza:
        if not _read(kind, stanza.get("type"), child, data):
            complete = False
    if not complete:
        data[XML_KEY] = serialize(renamespace(copy.deepcopy(stanza), CLIENT_NS))
    return data


def _text_only(child: Element) -> bool:
    return len(child) == 0 and not child.attrib


def _read(kind: str, type_: str | None, child: Element, data: dict[str, Any]) -> bool:
    """Put ``child`` into ``data``; False when the keys cannot hold all of it."""
    ns, name = split_tag(child.tag)
    if ns in _STREAM:
        if name in ("body", "subject", "thread") and kind == "message" and name not in data:
            data[name] = child.text or ""
            return _text_only(child)
        if name in ("show", "status") and kind == "presence" and name not in data:
            data[name] = child.text or ""
            return _text_only(child) and (name != "show" or data[name] in SHOWS)
        if name == "priority" and kind == "presence" and "priority" not in data:
            try:
                data["priority"] = int((child.text or "").strip())
            except ValueError:
                return False
            return _text_only(child)
        if name == "error" and "error" not in data:
            return _read_error(child, data)
        return False
    if ns == XHTML_IM_NS and name == "html" and kind == "message" and "html" not in data:
        if len(child) == 1 and split_tag(child[0].tag) == (XHTML_NS, "body"):
            data["html"] = serialize(child[0])
            return not child.attrib
        return False
    if ns == OOB_NS and name == "x" and kind == "message" and "oob_url" not in data:
        urls = [c for c in child if split_tag(c.tag)[1] == "url"]
        if len(child) == 1 and len(urls) == 1:
            data["oob_url"] = urls[0].text or ""
            return True
        return False
    if kind != "iq" or any(key in data for key in IQ_PAYLOADS):
        return False
    request = type_ in ("get", "set")
    if ns == PING_NS and name == "ping":
        data["ping"] = True
        return _text_only(child)
    if ns == DISCO_INFO_NS and name == "query":
        return _read_disco(child, request, data)
    if ns == DISCO_ITEMS_NS and name == "query":
        return _read_items(child, request, data)
    if ns == VERSION_NS and name == "query":
        if request:
            data["version"] = True
            return len(child) == 0
        version: dict[str, str] = {}
        for part in child:
            if split_tag(part.tag)[1] in ("name", "version", "os"):
                version[split_tag(part.tag)[1]] = part.text or ""
        data["version"] = version
        return len(version) == len(child)
    return False


def _read_error(error: Element, data: dict[str, Any]) -> bool:
    out: dict[str, Any] = {}
    complete = True
    if error.get("type"):
        out["type"] = error.get("type")
    for part in error:
        ns, name = split_tag(part.tag)
        if ns != STANZAS_NS:
            complete = False  # an application-specific condition
        elif name == "text":
            out["text"] = part.text or ""
        elif "condition" not in out:
            out["condition"] = name
            complete = complete and _text_only(part)
        else:
            complete = False
    data["error"] = out
    return complete and set(error.attrib) <= {"type"}


def _read_disco(query: Element, request: bool, data: dict[str, Any]) -> bool:
    node = query.get("node")
    if request:
        data["disco"] = {"node": node} if node else True
        return len(query) == 0 and set(query.attrib) <= {"node"}
    identities, features = [], []
    complete = True
    for part in query:
        name = split_tag(part.tag)[1]
        if name == "identity":
            identity = {k: part.get(k) for k in ("category", "type", "name") if part.get(k) is not None}
            complete = complete and set(part.attrib) <= {"category", "type", "name"}
            identities.append(identity)
        elif name == "feature" and part.get("var"):
            features.append(part.get("var"))
        else:
            complete = False  # data forms (XEP-0128) and anything else: in "xml"
    data["disco"] = {**({"node": node} if node else {}), "identities": identities, "features": features}
    return complete


def _read_items(query: Element, request: bool, data: dict[str, Any]) -> bool:
    node = query.get("node")
    if request:
        data["items"] = {"node": node} if node else True
        return len(query) == 0
    items = []
    for part in query:
        items.append({k: part.get(k) for k in ("jid", "name", "node") if part.get(k) is not None})
    data["items"] = items
    return node is None and all(split_tag(p.tag)[1] == "item" for p in query)


# --- JSON -> stanza -----------------------------------------------------------------------------


def _bad(reason: str) -> HttpError:
    return HttpError(400, f"JSON stanza: {reason}", condition="bad-request")


def _string(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string, not {type(value).__name__}")
    return check_xml_text(value, f"'{key}'")


def kind_of(data: dict[str, Any]) -> str:
    """The stanza kind: ``kind``, else what the keys imply (an IQ payload: iq; show/status/priority:
    presence; otherwise message)."""
    kind = data.get("kind")
    if kind is not None:
        if kind not in STANZA_NAMES:
            raise _bad(f"'kind' must be message, presence or iq, not {kind!r}")
        return kind
    if any(key in data for key in IQ_PAYLOADS):
        return "iq"
    if any(key in data for key in ("show", "status", "priority")):
        return "presence"
    return "message"


def from_json(data: Any) -> Element:
    """The stanza the JSON object describes (in jabber:client). 400 with the reason for anything else.

    With ``"xml"`` the stanza starts from that XML; the other keys replace what they name in it."""
    if not isinstance(data, dict):
        raise _bad(f"expected an object, not {type(data).__name__}")
    unknown = [key for key in data if key not in KEYS]
    if unknown:
        raise _bad(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    kind = kind_of(data)
    if XML_KEY in data:
        stanza = parse_xml(_string(data, XML_KEY).encode("utf-8"))
        ns, name = split_tag(stanza.tag)
        if ns not in _STREAM or name not in STANZA_NAMES:
            raise _bad(f"'xml' must be a message, presence or iq in jabber:client, not <{name}>")
        if "kind" in data and name != kind:
            raise _bad(f"'kind' is {kind!r} but 'xml' is a <{name}>")
        kind = name
        renamespace(stanza, CLIENT_NS)
    else:
        stanza = Element(f"{{{CLIENT_NS}}}{kind}")
    for attr in ("type", "to", "from", "id"):
        if attr in data:
            stanza.set(attr, _string(data, attr))
    if "lang" in data:
        stanza.set(XML_LANG, _string(data, "lang"))
    type_ = stanza.get("type")
    if type_ is not None and type_ not in TYPES[kind]:
        raise _bad(f"'type' of a {kind} must be one of {', '.join(TYPES[kind])}, not {type_!r}")
    if kind == "iq" and type_ is None:
        stanza.set("type", type_ := "get")
    for key, kinds in CONTENT_KEYS.items():
        if key not in data:
            continue
        if kind not in kinds:
            raise _bad(f"'{key}' does not belong in a {kind}")
        at = _remove(stanza, key)
        count = len(stanza)
        _WRITERS[key](stanza, data, type_)
        if at is not None:  # in the place of what it replaces: the stanza keeps its order
            for offset, child in enumerate(list(stanza)[count:]):
                stanza.remove(child)
                stanza.insert(at + offset, child)
    if kind == "iq" and sum(key in data for key in IQ_PAYLOADS) > 1:
        raise _bad(f"an iq carries one of {', '.join(IQ_PAYLOADS)}, not several")
    return stanza


_OWN_CHILD = {
    "body": ("", "body"), "subject": ("", "subject"), "thread": ("", "thread"), "show": ("", "show"),
    "status": ("", "status"), "priority": ("", "priority"), "error": ("", "error"),
    "html": (XHTML_IM_NS, "html"), "oob_url": (OOB_NS, "x"), "ping": (PING_NS, "ping"),
    "disco": (DISCO_INFO_NS, "query"), "items": (DISCO_ITEMS_NS, "query"), "version": (VERSION_NS, "query"),
}


def _remove(stanza: Element, key: str) -> int | None:
    """Remove the children ``key`` stands for; the index of the first, or None."""
    want_ns, want_name = _OWN_CHILD[key]
    first = None
    for index, child in reversed(list(enumerate(stanza))):
        ns, name = split_tag(child.tag)
        if name == want_name and (ns == want_ns or (want_ns == "" and ns in _STREAM)):
            stanza.remove(child)
            first = index
    return first


def _text_child(key: str):
    def write(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
        SubElement(stanza, f"{{{CLIENT_NS}}}{key}").text = _string(data, key)
    return write


def _write_show(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
    if data["show"] not in SHOWS:
        raise _bad(f"'show' must be one of {', '.join(SHOWS)}, not {data['show']!r}")
    SubElement(stanza, f"{{{CLIENT_NS}}}show").text = data["show"]


def _write_priority(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
    value = data["priority"]
    if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
        raise _bad(f"'priority' must be an integer from -128 to 127, not {value!r}")
    SubElement(stanza, f"{{{CLIENT_NS}}}priority").text = str(value)


def _write_html(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
    text = _string(data, "html")
    body = parse_xml(text.encode("utf-8")) if text.lstrip().startswith("<") else None
    if body is None or split_tag(body.tag)[1] != "body":
        # A fragment: wrapped in the XHTML body, as mod_rest does.
        body = parse_xml(f'<body xmlns="{XHTML_NS}">{text}</body>'.encode("utf-8"))
    elif split_tag(body.tag)[0] != XHTML_NS:
        raise _bad(f"'html' must be an XHTML <body> (namespace {XHTML_NS}) or a fragment")
    SubElement(stanza, f"{{{XHTML_IM_NS}}}html").append(body)


def _write_oob(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
    SubElement(SubElement(stanza, f"{{{OOB_NS}}}x"), f"{{{OOB_NS}}}url").text = _string(data, "oob_url")


def _write_ping(stanza: Element, data: dict[str, Any], type_: str | None) -> None:
    if data["ping"] is not True:
        raise _bad("'ping' must be true")
    SubElement(stanza, f"{{{PING_NS}}}ping")


def _node_of(value: Any, key: str) -> str | None:
    if value is True:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict) and set(value) <= {"node"} and isinstance(value.get("node", ""), str):
        return value.get("node") or None
    raise _bad(f"'{key}' in a request must be true, a node name or {{\"node\": ...}}")


def _write_disco(stanza: Element, data: dict[str, Any], type_: str | None) -> None:
    value = data["disco"]
    query = SubElement(stanza, f"{{{DISCO_INFO_NS}}}query")
    if type_ in ("get", "set"):
        node = _node_of(value, "disco")
        if node:
            query.set("node", node)
        return
    if not isinstance(value, dict):
        raise _bad("'disco' in a result must be an object {identities, features, [node]}")
    if value.get("node"):
        query.set("node", _string(value, "node"))
    for identity in value.get("identities", []):
        if not isinstance(identity, dict) or not all(isinstance(v, str) for v in identity.values()):
            raise _bad("'disco.identities' must be objects {category, type, [name]}")
        SubElement(query, f"{{{DISCO_INFO_NS}}}identity", {k: identity[k] for k in ("category", "type", "name")
                                                          if k in identity})
    for feature in value.get("features", []):
        if not isinstance(feature, str):
            raise _bad("'disco.features' must be strings")
        SubElement(query, f"{{{DISCO_INFO_NS}}}feature", {"var": feature})


def _write_items(stanza: Element, data: dict[str, Any], type_: str | None) -> None:
    value = data["items"]
    query = SubElement(stanza, f"{{{DISCO_ITEMS_NS}}}query")
    if type_ in ("get", "set"):
        node = _node_of(value, "items")
        if node:
            query.set("node", node)
        return
    if not isinstance(value, list):
        raise _bad("'items' in a result must be a list of {jid, [name], [node]}")
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("jid"), str) or \
                not all(isinstance(v, str) for v in item.values()):
            raise _bad("'items' in a result must be a list of {jid, [name], [node]}")
        SubElement(query, f"{{{DISCO_ITEMS_NS}}}item", {k: item[k] for k in ("jid", "name", "node") if k in item})


def _write_version(stanza: Element, data: dict[str, Any], type_: str | None) -> None:
    value = data["version"]
    query = SubElement(stanza, f"{{{VERSION_NS}}}query")
    if type_ in ("get", "set"):
        if value is not True:
            raise _bad("'version' in a request must be true")
        return
    if not isinstance(value, dict) or not set(value) <= {"name", "version", "os"}:
        raise _bad("'version' in a result must be an object {name, version, [os]}")
    for key in ("name", "version", "os"):
        if key in value:
            SubElement(query, f"{{{VERSION_NS}}}{key}").text = _string(value, key)


def _write_error(stanza: Element, data: dict[str, Any], _type: str | None) -> None:
    value = data["error"]
    if not isinstance(value, dict) or not set(value) <= {"type", "condition", "text"}:
        raise _bad("'error' must be an object {condition, [type], [text]}")
    condition = value.get("condition", "undefined-condition")
    if not isinstance(condition, str) or not condition.replace("-", "").isalpha():
        raise _bad(f"'error.condition' must be an RFC 6120 condition name, not {condition!r}")
    error_type = value.get("type") or error_type_of(condition)
    if error_type not in ("auth", "cancel", "continue", "modify", "wait"):
        raise _bad(f"'error.type' must be auth, cancel, continue, modify or wait, not {error_type!r}")
    error = SubElement(stanza, f"{{{CLIENT_NS}}}error", {"type": error_type})
    SubElement(error, f"{{{STANZAS_NS}}}{condition}")
    if value.get("text"):
        SubElement(error, f"{{{STANZAS_NS}}}text").text = _string(value, "text")


_WRITERS = {
    "body": _text_child("body"), "subject": _text_child("subject"), "thread": _text_child("thread"),
    "status": _text_child("status"), "show": _write_show, "priority": _write_priority, "html": _write_html,
    "oob_url": _write_oob, "ping": _write_ping, "disco": _write_disco, "items": _write_items,
    "version": _write_version, "error": _write_error,
}


# --- what a webhook's answer becomes ------------------------------------------------------------


def needs_reply(stanza: Element) -> bool:
    """An IQ get/set: it gets exactly one reply, whatever happens."""
    return split_tag(stanza.tag)[1] == "iq" and stanza.get("type") in ("get", "set")


def error_reply(original: Element, condition: str, text: str | None = None) -> Element:
    """The XMPP error ``original``'s sender gets (RFC 6120 8.3: same kind and id, addresses swapped)."""
    kind = split_tag(original.tag)[1]
    reply = Element(f"{{{CLIENT_NS}}}{kind}", _swapped(original))
    reply.set("type", "error")
    error = SubElement(reply, f"{{{CLIENT_NS}}}error", {"type": error_type_of(condition)})
    SubElement(error, f"{{{STANZAS_NS}}}{condition}")
    if text:
        SubElement(error, f"{{{STANZAS_NS}}}text").text = text
    return reply


def _swapped(original: Element) -> dict[str, str]:
    attrs = {}
    if original.get("from"):
        attrs["to"] = original.get("from") or ""
    if original.get("to"):
        attrs["from"] = original.get("to") or ""
    if original.get("id") is not None:
        attrs["id"] = original.get("id") or ""
    return attrs


def empty_result(iq: Element) -> Element:
    return Element(f"{{{CLIENT_NS}}}iq", {**_swapped(iq), "type": "result"})


def parse_answer(original: Element, content_type: str, body: bytes) -> Element | None:
    """The stanza in a webhook's 200 answer: XML, JSON in the mapping above, or plain text (the body
    of a message of the original's type). None for an empty body. 400 (HttpError) for anything else."""
    if not body.strip():
        return None
    media = content_type.split(";")[0].strip().lower()
    if media == "text/plain":
        try:
            text = check_xml_text(body.decode("utf-8"), "the webhook's text answer")
        except UnicodeDecodeError:
            raise _bad("the text answer is not UTF-8") from None
        original_type = original.get("type") if split_tag(original.tag)[1] == "message" else None
        message = Element(f"{{{CLIENT_NS}}}message", {"type": original_type or "chat"})
        SubElement(message, f"{{{CLIENT_NS}}}body").text = text
        return message
    if "json" in media:
        return from_json(parse_json(body))
    if "xml" in media or body.lstrip()[:1] == b"<":
        stanza = parse_xml(body)
        ns, name = split_tag(stanza.tag)
        if ns not in _STREAM or name not in STANZA_NAMES:
            raise _bad(f"the answer must be a message, presence or iq, not <{name}>")
        return renamespace(stanza, CLIENT_NS)
    raise HttpError(415, f"A webhook answer in {media or 'no content type'} cannot be read: "
                         "send application/xmpp+xml, application/json or text/plain")


def envelope(original: Element, answer: Element) -> Element:
    """The answer as a reply to ``original``: from the address it was sent to (the bot answers as
    itself), to its sender; an IQ's reply keeps its id, a message without a type takes the
    original's. 400 when it cannot be a reply."""
    kind = split_tag(answer.tag)[1]
    if needs_reply(original):
        if kind != "iq" or answer.get("type") not in ("result", "error"):
            raise _bad(f"the answer to an iq {original.get('type')} must be an iq result or error, "
                       f"not a {kind} {answer.get('type') or ''}".rstrip())
    elif kind == "iq" and answer.get("type") in ("result", "error"):
        raise _bad(f"an iq {answer.get('type')} answers only an iq get or set, not a {split_tag(original.tag)[1]}")
    for attr in ("to", "from"):
        answer.attrib.pop(attr, None)
    if kind == "message" == split_tag(original.tag)[1] and answer.get("type") is None and original.get("type"):
        answer.set("type", original.get("type") or "")  # a chat gets a chat back
    swapped = _swapped(original)
    if needs_reply(original):
        answer.attrib.pop("id", None)
    else:
        swapped.pop("id", None)
    answer.attrib.update(swapped)
    return answer


def reply_for(original: Element, status: int, content_type: str, body: bytes) -> Element | None:
    """What the sender of ``original`` gets for the webhook's HTTP answer, or None (nothing).

    2xx with a stanza: that stanza as the reply; 202/204 or no stanza: nothing, except an IQ's
    empty result; 4xx/5xx: the XMPP error of that status (mod_rest's table). An error stanza is
    never answered (RFC 6120 8.3.1). An answer that cannot be a reply is an internal-server-error."""
    if original.get("type") == "error":
        return None
    if 200 <= status < 300:
        try:
            answer = None if status in (202, 204) else parse_answer(original, content_type, body)
            if answer is None:
                return empty_result(original) if needs_reply(original) else None
            return envelope(original, answer)
        except HttpError as e:
            if not needs_reply(original) and split_tag(original.tag)[1] != "message":
                return None
            return error_reply(original, "internal-server-error", f"The bot's answer is not a reply: {e.reason}")
    if split_tag(original.tag)[1] == "presence":
        return None  # an error for a presence broadcast would only confuse the sender's client
    return error_reply(original, condition_for_status(status), f"The bot's HTTP service answered {status}")


# --- which stanzas go to the webhook ------------------------------------------------------------

COMPONENT_NAMESPACES = (DISCO_INFO_NS, DISCO_ITEMS_NS, "http://jabber.org/protocol/commands")


def address_form(to: str, component_jid: str) -> str | None:
    """"host" (``http.example.com[/res]``), "bare" (``bot@http.example.com``), "full"
    (``bot@http.example.com/res``), or None when ``to`` is not on the component's domain."""
    local, at, rest = to.partition("@")
    if not at:
        local, rest = "", to
    domain, slash, _resource = rest.partition("/")
    if domain.lower() != component_jid.lower():
        return None
    if not local:
        return "host"
    return "full" if slash else "bare"


def is_component_work(stanza: Element, server_domain: str, presence_forwarded: bool) -> bool:
    """Traffic the component handles itself, never posted: IQ replies, anything from the server
    (XEP-0356 grants), disco and ad-hoc commands on the component's own JID, and (when the server
    forwards its users' presences under XEP-0356) presence to the component's own JID."""
    kind = split_tag(stanza.tag)[1]
    if kind == "iq" and stanza.get("type") not in ("get", "set"):
        return True
    if (stanza.get("from") or "").lower() == server_domain.lower():
        return True
    to = stanza.get("to") or ""
    if "@" in to:
        return False
    if kind == "iq":
        return any(split_tag(child.tag)[0] in COMPONENT_NAMESPACES for child in stanza)
    return kind == "presence" and presence_forwarded
