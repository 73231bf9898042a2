"""BOSH pre-binding, the pure part: XEP-0124/XEP-0206 bodies, and the command's form and results."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement
from xml.sax.saxutils import quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from ...xmpp.forms import COMMANDS_NS, DATA_NS, command_result
from ...xmpp.stanzas import CLIENT_NS, split_tag
from .request import DEFAULT_HOLD, DEFAULT_WAIT

BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"

NODE = "pre-bind-bosh-session"
NAME = "Pre-bind BOSH user session"

# Tigase's wording for the "Error" field; NOT_SUPPORTED is ours (Tigase never logs in).
DOMAIN_UNKNOWN = "Domain of the JID doesn't exists"
NO_PERMISSION = "You do not have enough permissions"
INVALID_DATA = "Error processing request, provided data is invalid"
NOT_SUPPORTED = "The XMPP server does not support pre-binding a session for another user"


class BoshTerminated(Exception):
    """The BOSH service ended the session (a ``<body type='terminate'/>`` answer)."""

    def __init__(self, condition: str | None):
        super().__init__(condition or "no condition given")
        self.condition = condition


@dataclass(frozen=True)
class Prebound:
    jid: str  # the full JID the server bound
    sid: str
    rid: int  # the rid of the client's next request
    hold: str
    wait: str
    hostname: str


# --- the command's answers ------------------------------------------------------------------------


def commands_list(jid: str) -> dict:
    return {"items": [{"jid": jid, "node": NODE, "name": NAME}]}


def form(jid: str, hold: str, wait: str) -> dict:
    """Tigase's form, with its labels; hold and wait keep what the caller sent."""
    iq, x = _command("executing", "form")
    SubElement(x, f"{{{DATA_NS}}}title").text = NAME
    SubElement(x, f"{{{DATA_NS}}}instructions").text = "Fill out this form to create and pre-bind BOSH user session."
    _field(x, "FORM_TYPE", "hidden", "http://jabber.org/protocol/admin")
    _field(x, "from", "jid-single", None, "JID of the user for which session should be created - either "
                                          "BareJID or FullJID, the former will result in randomly generated resource")
    _field(x, "hold", "text-single", hold or str(DEFAULT_HOLD), "HOLD value (optional)")
    _field(x, "wait", "text-single", wait or str(DEFAULT_WAIT), "WAIT value (optional)")
    return command_result(jid, NODE, iq)


def result(jid: str, bound: Prebound) -> dict:
    iq, x = _command("completed", "result")
    _field(x, "from", "jid-single", bound.jid, "JID")
    _field(x, "hostname", "jid-single", bound.hostname, "hostname")
    _field(x, "rid", "text-single", str(bound.rid), "RID")
    _field(x, "sid", "text-single", bound.sid, "SID")
    _field(x, "hold", "text-single", bound.hold, "HOLD")
    _field(x, "wait", "text-single", bound.wait, "WAIT")
    return command_result(jid, NODE, iq)


def error_result(jid: str, text: str, reason: str) -> dict:
    iq, x = _command("completed", "result")
    _field(x, "Error", "fixed", text)
    SubElement(iq[0], f"{{{COMMANDS_NS}}}note", {"type": "error"}).text = reason
    return command_result(jid, NODE, iq)


def _command(status: str, form_type: str) -> tuple[Element, Element]:
    iq = Element("iq", {"type": "result"})
    command = SubElement(iq, f"{{{COMMANDS_NS}}}command", {"node": NODE, "status": status})
    return iq, SubElement(command, f"{{{DATA_NS}}}x", {"type": form_type})


def _field(x: Element, var: str, kind: str, value: str | None, label: str | None = None) -> None:
    field = SubElement(x, f"{{{DATA_NS}}}field", {"var": var, "type": kind})
    if label:
        field.set("label", label)
    if value is not None:
        SubElement(field, f"{{{DATA_NS}}}value").text = value


# --- XML on the wire ------------------------------------------------------------------------------


def session_request(rid: int, domain: str, hold: int, wait: int) -> bytes:
    """XEP-0124 session creation request, XEP-0206 flavoured."""
    return _body({"rid": str(rid), "to": domain, "hold": str(hold), "wait": str(wait), "ver": "1.6",
                  "xml:lang": "en", "xmpp:version": "1.0"})


def session_body(rid: int, sid: str, payload: str = "", *, restart: str | None = None,
                 terminate: bool = False) -> bytes:
    attrs = {"rid": str(rid), "sid": sid}
    if restart:
        attrs.update({"to": restart, "xml:lang": "en", "xmpp:restart": "true"})
    if terminate:
        attrs["type"] = "terminate"
    return _body(attrs, payload)


def _body(attrs: dict[str, str], payload: str = "") -> bytes:
    head = f"<body xmlns='{BOSH_NS}'"
    if any(name.startswith("xmpp:") for name in attrs):
        head += f" xmlns:xmpp='{XBOSH_NS}'"
    head += "".join(f" {name}={quoteattr(value)}" for name, value in attrs.items())
    return (f"{head}>{payload}</body>" if payload else head + "/>").encode("utf-8")


def parse_body(raw: bytes) -> Element:
    """A response ``<body/>``; BoshTerminated for ``type='terminate'``, ValueError when it is no BOSH body."""
    try:
        body = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as e:
        raise ValueError(f"malformed XML ({e})") from None
    if body.tag != f"{{{BOSH_NS}}}body":
        raise ValueError(f"<{split_tag(body.tag)[1]}/> instead of a BOSH <body/>")
    if body.get("type") == "terminate":
        raise BoshTerminated(body.get("condition"))
    return body


def payloads(body: Element) -> list[Element]:
    """The body's children as on a c2s stream: a stanza without its own xmlns inherits the body's
    namespace, and is a ``jabber:client`` stanza (XEP-0206)."""
    children = list(body)
    for child in children:
        namespace, name = split_tag(child.tag)
        if namespace == BOSH_NS:
            child.tag = f"{{{CLIENT_NS}}}{name}"
    return children
