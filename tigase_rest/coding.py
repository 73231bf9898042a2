"""Request and response bodies: Tigase's XML <-> data rules, JSON, and content negotiation.

Tigase's XmlCoder rules, which payloads in the reference documentation rely on:
- attributes and namespaces are ignored, only element names and text count;
- an element whose children are all ``<item>`` is a list;
- other elements with children are maps keyed by child name;
- a leaf is its text ("" when empty);
- the root is kept as the single key: ``<command>..</command>`` -> ``{"command": {...}}``.
Deviation: Tigase keeps only the last of repeated child names; we keep them all as a list, so
``<value>a</value><value>b</value>`` is ``["a", "b"]`` and nothing the client sent is lost.
Deviation: the attributes of an element without text count as child elements (a child of the same
name wins), so ``<command node="uptime"/>`` is ``{"command": {"node": "uptime"}}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import xml.parsers.expat
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from .errors import HttpError

JSON = "json"
XML = "xml"
CONTENT_TYPES = {JSON: "application/json; charset=utf-8", XML: "application/xml; charset=utf-8"}


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# --- XML ----------------------------------------------------------------------------------------


# Deeper documents are refused: real payloads nest a few levels, and the recursive serialisers
# downstream (ours, slixmpp's) would hit Python's recursion limit.
MAX_XML_DEPTH = 100


# An XML declaration naming no encoding, or UTF-8/ASCII: the bytes can be read as ASCII.
_ASCII_PROLOG = re.compile(rb"""<\?xml(?:\s+version\s*=\s*["'][^"']*["'])?"""
                           rb"""(?:\s+encoding\s*=\s*["'](?:utf-8|us-ascii)["'])?"""
                           rb"""(?:\s+standalone\s*=\s*["'](?:yes|no)["'])?\s*\?>""", re.I)


def _plainly_without_dtd(body: bytes) -> bool:
    """True when ``body`` provably has no DTD: it is read in an ASCII-compatible encoding (no BOM,
    no other declared encoding, not UTF-16) and ``<!DOCTYPE`` does not occur. Without a DTD there
    are no entity declarations and no external references, so the C parser is as safe as
    defusedxml's (pure Python) one, at half the cost; anything else takes defusedxml's path."""
    first = body.lstrip()[:1]
    if first != b"<" or b"\0" in body or b"<!DOCTYPE" in body:
        return False
    if body.startswith(b"<?"):
        return _ASCII_PROLOG.match(body) is not None
    return True


def parse_xml(body: bytes) -> Element:
    """Parse one XML document safely: no DTD, no entities, no external references, bounded depth."""
    try:
        if _plainly_without_dtd(body):
            root = ElementTree.fromstring(body)
        else:
            root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise HttpError(400, f"XML with a DTD or entity declarations is not accepted ({type(e).__name__})") from None
    except ParseError as e:
        raise HttpError(400, f"Malformed XML: {e}") from None
    except (ValueError, LookupError) as e:
        # expat reads only single-byte encodings (besides UTF-8/16) and knows no others: UTF-7 and
        # Shift_JIS raise ValueError, an unknown name LookupError. The client can always send UTF-8.
        raise HttpError(400, f"XML in an encoding that is not supported ({e}): send UTF-8") from None
    if body.count(b"<") <= MAX_XML_DEPTH:
        return root  # each level needs a start tag of its own: too few tags to be too deep
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_XML_DEPTH:
            raise HttpError(400, f"Malformed XML: nested too deeply (more than {MAX_XML_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in node)
    return root


def element_to_data(element: Element) -> Any:
    """One element's content as data (without its own name)."""
    children = list(element)
    # Deviation: the attributes of an element without text count as children (``<command node="uptime"/>``).
    attributes = {} if (element.text or "").strip() else {
        local_name(k): v for k, v in element.attrib.items() if not k.startswith("{")}  # not xml:lang
    if not children:
        return attributes or element.text or ""
    names = [local_name(child.tag) for child in children]
    if not attributes and all(name == "item" for name in names):
        return [element_to_data(child) for child in children]
    result: dict[str, Any] = {}
    for name, child in zip(names, children):
        value = element_to_data(child)
        if name in result:
            previous = result[name]
            if isinstance(previous, _Repeated):
                previous.append(value)
            else:
                result[name] = _Repeated([previous, value])
        else:
            result[name] = value
    for name, value in attributes.items():
        result.setdefault(name, value)  # a child of the same name wins
    return {k: list(v) if isinstance(v, _Repeated) else v for k, v in result.items()}


class _Repeated(list):
    """Marks a list made from repeated sibling names, so a value that is itself a list stays one item."""


def xml_to_data(element: Element) -> Any:
    """A document root as data: wrapped in its name, except a bare ``<item>`` list (as Tigase)."""
    content = element_to_data(element)
    if isinstance(content, list) and len(element):
        return content
    return {local_name(element.tag): content}


_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_ASCII_NAME_CHAR = re.compile(r"[A-Za-z0-9_.\-]")


@lru_cache(maxsize=4096)
def _is_xml_name(name: str) -> bool:
    """Whether our own parser (expat) accepts ``name`` as an element name. Python's \\w is wider
    than XML's name characters (e.g. "\u00b2"), so non-ASCII names are checked by the parser itself."""
    # ASCII is checked here (no ':' prefixes, no spaces or quotes that would smuggle in attributes).
    if not name or any(c.isascii() and not _ASCII_NAME_CHAR.match(c) for c in name):
        return False
    parser = xml.parsers.expat.ParserCreate()
    try:
        parser.Parse(f"<{name}/>", True)
    except xml.parsers.expat.ExpatError:
        return False
    return True


# Names already checked (the same few keys come back in every answer), bounded: emptied when full.
_NAMES: dict[Any, str] = {}
_MAX_NAMES = 4096


def _element_name(key: Any) -> str:
    if type(key) is str:
        known = _NAMES.get(key)
        if known is None:
            if len(_NAMES) >= _MAX_NAMES:
                _NAMES.clear()
            known = _NAMES[key] = _checked_name(key)
        return known
    return _checked_name(str(key))


def _checked_name(name: str) -> str:
    if _ASCII_NAME.match(name) or (not name.isascii() and _is_xml_name(name)):
        return name
    # Keys come from handlers (e.g. a stats component name); keep the document well-formed.
    cleaned = "".join(
        c if _ASCII_NAME_CHAR.match(c) or (not c.isascii() and _is_xml_name("a" + c)) else "_" for c in name)
    return cleaned if _is_xml_name(cleaned) else "_" + cleaned


# Characters XML 1.0 cannot carry at all, even as references; they become U+FFFD in our answers.
NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_xml_text(text: str, where: str) -> str:
    """``text`` when XML can carry it; else 400 naming ``where`` and the character. Sent raw, a NUL
    or a lone surrogate would make the server close the stream that carried it."""
    bad = NOT_XML_CHAR.search(text)
    if bad:
        raise HttpError(400, f"{where} contains U+{ord(bad.group()):04X}, a character XML cannot carry")
    return text


# What _text changes: markup, CR, and the characters of NOT_XML_CHAR. Most text has none of them.
_TEXT_TO_CHANGE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(text: str) -> str:
    if _TEXT_TO_CHANGE.search(text) is None:
        return text
    # A raw CR would be read back as LF (XML end-of-line handling); a reference keeps it.
    return NOT_XML_CHAR.sub("\ufffd", escape(text)).replace("\r", "&#13;")


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _text(str(value))


class RepeatedElements(list):
    """A list written in XML as one element per item, each with the key's name (Tigase's
    ``<value>a</value><value>b</value>``) instead of ``<item>`` children; JSON: a plain list."""


def _write(name: str, value: Any, out: list[str]) -> None:
    kind = type(value)
    if kind is str:  # a leaf: most of an answer
        out.append(f"<{name}>{_text(value)}</{name}>" if value else f"<{name}/>")
        return
    if kind is not dict and kind is not list:  # None, numbers, tuples, subclasses
        if value is None or value == "" or value == {} or value == []:
            out.append(f"<{name}/>")
            return
        if isinstance(value, RepeatedElements):
            for child in value:
                _write(name, child, out)
            return
        if not isinstance(value, (dict, list, tuple)):
            out.append(f"<{name}>{_scalar(value)}</{name}>")
            return
    elif not value:
        out.append(f"<{name}/>")
        return
    out.append(f"<{name}>")
    if isinstance(value, dict):
        for key, child in value.items():
            child_name = _NAMES.get(key) if type(key) is str else None
            if child_name is None:
                child_name = _element_name(key)
            if type(child) is str:  # the leaf case of the top, inline (a call less per field)
                out.append(f"<{child_name}>{_text(child)}</{child_name}>" if child else f"<{child_name}/>")
            else:
                _write(child_name, child, out)
    else:
        for child in value:
            _write("item", child, out)
    out.append(f"</{name}>")


def data_to_xml(data: Any) -> str:
    """Data as an XML document: a single-key map gives the root; anything else goes in <result>."""
    out: list[str] = []
    if isinstance(data, dict) and len(data) == 1:
        (key, value), = data.items()
        _write(_element_name(key), value, out)
    else:
        _write("result", data, out)
    return "".join(out)


# --- JSON ---------------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HttpError(400, f"Request body is not valid UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except json.JSONDecodeError as e:
        raise HttpError(400, f"Malformed JSON: {e}") from None
    except ValueError:
        # The one other ValueError: Python refuses to convert integers of over 4300 digits
        # (sys.int_info.str_digits_check_threshold; CVE-2020-10735). No field holds such a number.
        raise HttpError(400, f"Malformed JSON: an integer with more than {sys.get_int_max_str_digits()} digits "
                             f"is not accepted") from None
    except RecursionError:
        raise HttpError(400, "Malformed JSON: nested too deeply") from None


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: what Infinity is refused as, spelled as a number
        raise HttpError(400, f"Malformed JSON: the number {text[:40]} is out of range")
    return value


def _not_json(name: str) -> None:
    # Python's json reads NaN/Infinity, which JSON (RFC 8259) does not have and no XMPP field can hold.
    raise HttpError(400, f"Malformed JSON: {name} is not a JSON value")


def data_to_json(data: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, indent=4)``, byte for byte. With an indent, ``json``
    writes in pure Python through nested generators (its C encoder has no indent); answers made of
    plain dicts (str keys), lists, strings, ints, booleans and None are written here by one recursive
    walk into a list, about 3x faster. Anything else (floats, tuples, subclasses, other keys, very deep
    data) goes to ``json.dumps`` itself."""
    out: list[str] = []
    try:
        _json_write(data, out, "\n")
    except _NotPlain:
        return json.dumps(data, ensure_ascii=False, indent=4)
    return "".join(out)


class _NotPlain(Exception):
    """Data ``_json_write`` leaves to ``json.dumps``."""


_JSON_STRING = json.encoder.encode_basestring  # the C encoder of json.dumps(ensure_ascii=False)
_JSON_MAX_DEPTH = 64  # deeper (or circular) data: json.dumps, which also names a circular reference


def _json_write(value: Any, out: list[str], newline: str) -> None:
    kind = type(value)
    if kind is str:
        out.append(_JSON_STRING(value))
    elif kind is dict or kind is list:
        opening, closing = ("{", "}") if kind is dict else ("[", "]")
        if not value:
            out.append(opening + closing)
            return
        if len(newline) > 4 * _JSON_MAX_DEPTH:
            raise _NotPlain
        inner = newline + "    "
        separator = opening + inner
        if kind is dict:
            for key, child in value.items():
                if type(key) is not str:
                    raise _NotPlain
                out.append(separator)
                out.append(_JSON_STRING(key))
                out.append(": ")
                if type(child) is str:
                    out.append(_JSON_STRING(child))
                else:
                    _json_write(child, out, inner)
                separator = "," + inner
        else:
            for child in value:
                out.append(separator)
                _json_write(child, out, inner)
                separator = "," + inner
        out.append(newline + closing)
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    else:
        raise _NotPlain


# --- negotiation --------------------------------------------------------------------------------


def _format_of(media_type: str | None) -> str | None:
    if not media_type:
        return None
    media_type = media_type.lower()
    if "json" in media_type:
        return JSON
    if "xml" in media_type:
        return XML
    return None


def _format_from_accept(accept: str | None) -> str | None:
    """The first of JSON/XML named in Accept, honouring q=0 as 'not acceptable'."""
    if not accept:
        return None
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        fmt = _format_of(media)
        if fmt is None:
            continue
        q = 1.0
        for param in params:
            if param.lower().startswith("q="):  # parameter names are case-insensitive
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -index) > (best[0], -best[1])):
            best = (q, index, fmt)
    return best[2] if best else None


def response_format(content_type: str | None, type_param: str | None, accept: str | None) -> str:
    """Tigase's order (request Content-Type, then ``type`` parameter, then XML), plus Accept
    when neither of the first two names JSON or XML (Tigase ignores Accept)."""
    return _format_of(content_type) or _format_of(type_param) or _format_from_accept(accept) or XML


def negotiated_format(request) -> str:
    """JSON or XML: the answer format an HTTP request asked for (Content-Type, then the ``type``
    parameter, then Accept; XML otherwise)."""
    return response_format(request.headers.get("Content-Type"), request.query.get("type"),
                           request.headers.get("Accept"))


def body_format(content_type: str | None, body: bytes) -> str | None:
    """How to decode a request body: by Content-Type, else by its first character.

    Sniffing is a deviation: Tigase passes an undecoded body when the type names neither JSON
    nor XML, which breaks ``curl -d`` (it sends application/x-www-form-urlencoded)."""
    fmt = _format_of(content_type)
    if fmt:
        return fmt
    head = body.lstrip()[:1]
    if head == b"<":
        return XML
    if head in (b"{", b"["):
        return JSON
    return None


def decode_body(body: bytes, fmt: str) -> Any:
    if fmt == JSON:
        return parse_json(body)
    root = parse_xml(body)
    try:
        return xml_to_data(root)
    except RecursionError:
        raise HttpError(400, "Malformed XML: nested too deeply") from None


def encode(data: Any, fmt: str) -> str:
    return data_to_json(data) if fmt == JSON else data_to_xml(data)


async def read_body(request, timeout: float, stopping: asyncio.Event | None = None) -> bytes:
    """The whole request body: within ``timeout`` seconds (else 408) and before shutdown (else 503).

    aiohttp enforces the size (client_max_size) while reading. Once it prepares to shut down it
    drops whatever a connection still receives, so a body cut by the shutdown would never complete.
    An empty or absent body is b""."""
    if not request.body_exists:
        return b""
    if request.content.is_eof():  # all of it is here already: the common case, no waiting
        return await request.read()
    reading = asyncio.ensure_future(request.read())
    waits = {reading}
    if stopping is not None:
        waits.add(asyncio.ensure_future(stopping.wait()))
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if reading in done:
        return reading.result()
    if done:
        raise HttpError(503, "The component is shutting down: the rest of the request body will not be read; "
                             "retry", condition="service-unavailable", headers={"Retry-After": "5"})
    raise HttpError(408, f"The request body did not arrive within {timeout:g} s")
