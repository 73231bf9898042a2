"""Bad input against a real component and Prosody: every refusal is a 4xx with the reason, nothing
reaches the XMPP server, and the process is unharmed.

"Nothing reaches the server" is checked with a real client: bob is online, every bad request is
aimed at bob, and after each one a valid message to bob (the marker) must be answered 200 and must
be the first thing bob receives. Stanzas from one sender to one session keep their order, so
anything the bad request had sent would arrive before the marker.
Cases already in test_stream.py/test_adhoc.py are not repeated here.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rest import ADMIN, KEY, Answer, basic
from tools.prosody import is_privilege_notice

BOB = "bob@localhost/bad-input"
XML = {"Content-Type": "application/xml"}
JSON = {"Content-Type": "application/json"}
PASSWD_LINE = "root:x:0:0"  # the first line of /etc/passwd
ADHOC_AT_BOB = "/rest/adhoc/" + BOB  # an IQ that leaked would land in bob's client
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)


async def send(component, method: str, path: str, *, body=None, headers=None, auth=ADMIN) -> Answer:
    """Like rest.call, but ``path`` goes on the wire exactly as written (already percent-encoded)."""
    merged = {**KEY, **(auth or {}), **(headers or {})}
    url = yarl.URL(component.url + path, encoded=True)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
        async with http.request(method, url, data=body, headers=merged) as response:
            return Answer(response.status, dict(response.headers), await response.text(errors="replace"))


async def raw(component, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, str]:
    """One request written byte for byte (no client-side path normalisation): (status, body)."""
    port = yarl.URL(component.url).port
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        # Read the one response only: after an early answer the server may linger on the unread body.
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        text = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), timeout)
    finally:
        writer.close()
    return int(lines[0].split()[1]), text.decode("utf-8", "replace")


def raw_head(component, method: str, target: str, extra: str = "") -> str:
    auth = ADMIN["Authorization"]
    return (f"{method} {target} HTTP/1.1\nHost: {yarl.URL(component.url).authority}\nApi-Key: {KEY['Api-Key']}\n"
            f"Authorization: {auth}\nConnection: close\n{extra}")


class Inbox:
    """Everything bob's client receives (message, presence, iq) in arrival order, minus his own
    presence echo, Prosody's privilege notices and offline messages earlier tests left (delayed)."""

    def __init__(self, client):
        self.client = client
        self.stanzas: list = []
        self.seen = 0  # stanzas already accounted for by the previous checkpoint
        self.arrived = asyncio.Event()
        self.markers = itertools.count(1)
        for name in ("message", "presence", "iq"):
            client.xmpp.register_handler(Callback(f"inbox {name}", MatchXPath(f"{{jabber:client}}{name}"), self._take))

    def _take(self, stanza) -> None:
        if stanza.name == "presence" and stanza["from"] == self.client.xmpp.boundjid:
            return
        delayed = stanza.xml.find("{urn:xmpp:delay}delay") is not None
        if stanza.name == "message" and (is_privilege_notice(stanza) or delayed):
            return
        self.stanzas.append(stanza)
        self.arrived.set()

    async def wait_for(self, predicate, timeout: float = 5):
        async def scan():
            while True:
                for index in range(self.seen, len(self.stanzas)):
                    if predicate(self.stanzas[index]):
                        return index
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(scan(), timeout)

    async def checkpoint(self, component, after: str) -> None:
        """A valid request works, and bob received nothing before its marker."""
        body = f"marker-{next(self.markers)}"
        answer = await send(component, "POST", "/rest/stream/", headers=XML,
                            body=f'<message to="{BOB}" type="chat"><body>{body}</body></message>')
        if answer.status != 200:
            raise AssertionError(f"a valid request after {after} failed: {answer.status} {answer.text}")
        try:
            index = await self.wait_for(lambda s: s.name == "message" and s["body"] == body)
        except asyncio.TimeoutError:
            raise AssertionError(f"bob never received the marker sent after {after}") from None
        leaked = [str(s) for s in self.stanzas[self.seen:index]]
        self.seen = index + 1
        if leaked:
            raise AssertionError(f"{after} reached bob: {leaked}")


@pytest.fixture
async def inbox(xmpp_client):
    return Inbox(await xmpp_client("bob", resource="bad-input"))


async def refused(component, inbox, method, path, *, body=None, headers=None, auth=ADMIN, status=400, reason=""):
    """One bad request: ``status`` with ``reason`` in the error body, the process alive, bob untouched."""
    shown = body[:160] if isinstance(body, (bytes, str)) else body
    what = f"{method} {path[:100]} {shown!r}"
    answer = await send(component, method, path, body=body, headers=headers, auth=auth)
    # plain raises: these messages are collected by all_refused and must stay short
    if component.process.poll() is not None:
        raise AssertionError(f"{what} killed the component")
    if answer.status != status or "reason" not in answer.text or reason not in answer.text:
        raise AssertionError(f"{what}: expected {status} with {reason!r}, got {answer.status} "
                             + " ".join(answer.text.split())[:300])
    await inbox.checkpoint(component, what)
    return answer


async def all_refused(component, inbox, cases: list[dict]) -> list[Answer]:
    """Every case is tried (one failure does not hide the next); the report names each failure."""
    failures, answers = [], []
    for case in cases:
        try:
            answers.append(await refused(component, inbox, **case))
        except (AssertionError, asyncio.TimeoutError, aiohttp.ClientError) as e:
            failures.append(f"{type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} of {len(cases)} bad requests not refused cleanly:\n" + "\n".join(failures)
    return answers


def message(body: str = "hello", to: str = BOB) -> str:
    return f'<message to="{to}" type="chat"><body>{body}</body></message>'


def stream(body, reason, **kw) -> dict:
    return {"method": "POST", "path": "/rest/stream/", "body": body, "headers": XML, "reason": reason, **kw}


def adhoc(body, reason, headers=JSON, **kw) -> dict:
    return {"method": "POST", "path": ADHOC_AT_BOB, "body": body, "headers": headers, "reason": reason, **kw}


# --- XML ---------------------------------------------------------------------------------------


MALFORMED_STANZAS = [
    f"<message to='{BOB}'><body>x</bdy></message>",  # mismatched tag
    f"<message to={BOB}><body>x</body></message>",  # unquoted attribute
    f"<message to='{BOB}'><body>&nbsp;</body></message>",  # undefined entity
    f"<message to='{BOB}'><body><![CDATA[never closed</body></message>",
    f"<message to='{BOB}'><body>x</body></message>trailing text",
    f"<message to='{BOB}'/><iq type='get' to='{BOB}'><ping xmlns='urn:xmpp:ping'/></iq>",  # two roots
    f"<message to='{BOB}' to='{BOB}'><body>duplicate attribute</body></message>",
    f"<x:message xmlns:y='jabber:client' to='{BOB}'/>",  # unbound prefix
    "just text",
    "<",
    "<?xml version='1.0'?>",
]


async def test_malformed_xml_is_400(component, inbox):
    await all_refused(component, inbox, [stream(body, "Malformed XML") for body in MALFORMED_STANZAS] + [
        adhoc(body, "Malformed XML", headers=XML)
        for body in ("<command><node>x</node>", "<command><node>x</node></command><command/>", "<command>&x;</command>")
    ])


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


@pytest.fixture
async def ssrf_probe():
    """A local HTTP listener: an external DTD or entity that the parser fetched would connect here."""
    connections = []

    async def on_connect(reader, writer):
        connections.append(await reader.read(1024))
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n<!ENTITY x 'fetched'>")
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/evil.dtd", connections
    server.close()
    await server.wait_closed()


async def test_dtds_and_entities_are_refused_never_expanded_never_fetched(component, inbox, ssrf_probe):
    url, fetched = ssrf_probe
    cases = [stream(body, "DTD") for body in (
        BILLION_LAUGHS + message("&lol9;"),
        f'<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>{message("&x;")}',
        f'<!DOCTYPE m [<!ENTITY x SYSTEM "{url}">]>{message("&x;")}',
        f'<!DOCTYPE m [<!ENTITY % p SYSTEM "{url}"> %p;]>{message()}',
        f'<!DOCTYPE message SYSTEM "{url}">{message()}',
        f'<!DOCTYPE message PUBLIC "-//X//EN" "file:///etc/passwd">{message()}',
        f"<!DOCTYPE message [<!ELEMENT message ANY>]>{message()}",
    )] + [adhoc(body, "DTD", headers=XML) for body in (
        BILLION_LAUGHS + "<command><node>&lol9;</node></command>",
        '<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><command><node>&x;</node></command>',
    )]
    for answer in await all_refused(component, inbox, cases):
        assert PASSWD_LINE not in answer.text and "fetched" not in answer.text, answer.text
    assert fetched == [], "the component fetched an external DTD or entity"


# --- encodings ---------------------------------------------------------------------------------


ENCODING_PAYLOADS = [
    b"\xff\xfe",  # never valid in UTF-8
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate
    b"caf\xe9",  # Latin-1, no declaration
    b"\xe2\x82",  # truncated sequence
    b"\x01",  # a control character XML 1.0 cannot carry (and JSON strings neither)
    b"&#0;",  # ... nor as a reference
    b"&#xD800;",
]


async def test_invalid_utf8_and_characters_are_400(component, inbox):
    cases = []
    for payload in ENCODING_PAYLOADS:
        cases.append(stream(f'<message to="{BOB}"><body>'.encode() + payload + b"</body></message>", "Malformed XML"))
        cases.append(adhoc(b"<command><node>" + payload + b"</node></command>", "Malformed XML", headers=XML))
        if not payload.startswith(b"&"):  # a character reference is plain text in JSON
            cases.append(adhoc(b'{"command": {"node": "' + payload + b'"}}',
                               "Malformed JSON" if payload == b"\x01" else "not valid UTF-8"))
    await all_refused(component, inbox, cases)


async def health(component) -> dict:
    answer = await send(component, "GET", "/rest/health?type=application/json")
    return answer.json()["health"]


async def test_json_strings_that_xml_cannot_carry_are_400(component, inbox):
    """Valid JSON (escaped, the body itself is ASCII), but no XML stanza can hold these characters:
    sent as they are, the server would close the stream, and with it the caller's session."""
    await inbox.checkpoint(component, "the start")  # logs the admin in
    logins = (await health(component))["caller_logins"]
    cases = []
    for value in ("a\u0000b", "\u0001", "\u001b[31m", "\ud800", "\uffff"):
        for command in ({"node": value},
                        {"node": "x", "fields": [{"var": "v", "value": value}]},
                        {"node": "x", "fields": [{"var": value, "value": "v"}]},
                        {"node": "x", "sessionid": value}):
            cases.append(adhoc(json.dumps({"command": command}), ""))
    failures = ""
    try:
        await all_refused(component, inbox, cases)
    except AssertionError as e:
        failures = str(e)
    relogins = (await health(component))["caller_logins"] - logins
    assert not failures and relogins == 0, f"{failures}\nthe server closed the caller's session {relogins} times"


# --- size --------------------------------------------------------------------------------------


async def chunked(data: bytes, size: int = 256):
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_body_size_limit_is_exact_and_holds_without_content_length(component_factory, inbox):
    component = component_factory(http={"max_body_bytes": 1024})
    head, tail = f'<message to="{BOB}" type="chat"><body>', "</body></message>"
    fits = (head + "f" * (1024 - len(head) - len(tail)) + tail).encode()
    answer = await send(component, "POST", "/rest/stream/", body=fits, headers=XML)
    assert (len(fits), answer.status) == (1024, 200), answer.text
    inbox.seen = 1 + await inbox.wait_for(lambda s: s.name == "message" and s["body"].startswith("fff"))

    over = (head + "o" * (1025 - len(head) - len(tail)) + tail).encode()
    command = json.dumps({"command": {"node": "x", "fields": [{"var": "v", "value": "o" * 2000}]}}).encode()
    await all_refused(component, inbox, [
        stream(over, "larger than 1024", status=413),
        stream(chunked(over * 8), "larger than 1024", status=413),  # no Content-Length
        adhoc(command, "larger than 1024", status=413),
        adhoc(chunked(command), "larger than 1024", status=413),
    ])
    # A client announcing 10 GB is refused from the headers alone, without sending a byte of it.
    status, text = await raw(component, raw_head(component, "POST", "/rest/stream/",
                                                 "Content-Type: application/xml\nContent-Length: 10000000000\n"))
    assert status == 413 and "larger than 1024" in text
    await inbox.checkpoint(component, "a 10 GB Content-Length")


async def test_deep_nesting_is_400(component, inbox):
    depth = 10_000
    await all_refused(component, inbox, [
        adhoc("[" * depth + "]" * depth, "nested too deeply"),
        adhoc('{"a": ' * depth + "1" + "}" * depth, "nested too deeply"),
        adhoc('{"command": ' + '{"node": ' * depth + '"x"' + "}" * (depth + 1), "nested too deeply"),
        adhoc("<command>" + "<a>" * depth + "x" + "</a>" * depth + "</command>", "nested too deeply", headers=XML),
        # the same depth inside a stanza's payload: refused before anything is sent
        stream(f'<message to="{BOB}"><x xmlns="urn:example:deep">' + "<a>" * depth + "</a>" * depth + "</x></message>",
               "nested too deeply"),
    ])


# --- adhoc bodies of the wrong shape -----------------------------------------------------------


WRONG_SHAPES = [
    ('"a string"', "must be an object"),
    ("42", "must be an object"),
    ("true", "must be an object"),
    ('{"command": []}', "'command' must be an object"),
    ('{"command": "node"}', "'command' must be an object"),
    ('{"command": {"node": ["a", "b"]}}', "has no 'node'"),
    ('{"command": {"node": 7}}', "has no 'node'"),
    ('{"command": {"node": "x", "fields": [["var", "value"]]}}', "fields[0] must be an object"),
    ('{"command": {"node": "x", "fields": ["var=value"]}}', "fields[0] must be an object"),
    ('{"command": {"node": "x", "fields": 17}}', "'fields' must be a list"),
    ('{"command": {"node": "x", "fields": [{"var": 5, "value": "v"}]}}', "fields[0] has no 'var'"),
    ('{"command": {"node": "x", "fields": [{"value": "v"}]}}', "fields[0] has no 'var'"),
    ('{"command": {"node": "x", "fields": [{"var": "a", "value": [["nested"]]}]}}', "fields[0] (a).value"),
    ('{"command": {"node": "x", "fields": [{"var": "a", "value": [{"o": 1}]}]}}', "fields[0] (a).value"),
    ('{"command": {"node": "x", "sessionid": 12}}', "'sessionid' must be"),
    ('{"command": {"node": "x", "sessionid": {"id": "s"}}}', "'sessionid' must be"),
    ('{"command": {"node": "x", "action": ["next"]}}', "'action' must be one of"),
    ('{"command": {"node": "x", "action": "execute; drop"}}', "'action' must be one of"),
]


async def test_adhoc_bodies_of_the_wrong_shape_are_400(component, inbox):
    await all_refused(component, inbox, [adhoc(body, reason) for body, reason in WRONG_SHAPES])


# --- JIDs --------------------------------------------------------------------------------------


LONG = "x" * 1024  # one byte over the 1023-byte limit of each JID part (RFC 7622)
INVALID_JIDS = ["@localhost", "a@@b", 'a"b@localhost', "a b@localhost", "bob\x00@localhost", "bob@local host",
                "bob@-bad-", LONG + "@localhost", "bob@" + LONG, "bob@localhost/" + LONG, "bob@localhost/"]


async def test_invalid_jids_are_400(component, inbox):
    cases = []
    for jid in INVALID_JIDS:
        encoded = quote(jid, safe="@/")
        cases.append({**stream(message(to="nobody@localhost"), "Invalid JID in the URL"),
                      "path": "/rest/stream/" + encoded})
        if "\x00" not in jid:  # XML cannot carry it at all: the encoding tests cover that
            attr = jid.replace('"', "&quot;")
            cases.append(stream(f'<message to="{attr}"><body>x</body></message>', "Invalid JID in the 'to' attribute"))
            cases.append(stream(f'<message from="{attr}" to="{BOB}"><body>x</body></message>',
                                "Invalid JID in the 'from' attribute"))
        if jid.endswith("/"):
            continue  # /rest/adhoc/{jid}/: a trailing slash is accepted there (as /rest/stream/), not a resource
        if jid.startswith("@") or "@@" in jid:  # these match no adhoc route at all
            cases.append({"method": "GET", "path": "/rest/adhoc/" + encoded, "status": 404, "reason": "No handler for"})
        else:
            cases.append({"method": "GET", "path": "/rest/adhoc/" + encoded, "reason": "Invalid JID in the URL"})
    await all_refused(component, inbox, cases)


def prosody_connections(prosody) -> int:
    """c2s connections Prosody accepted: at its info level it logs one line per connection, and
    nothing per SASL failure."""
    return prosody.log_path.read_text(errors="replace").count("Client connected")


async def test_invalid_basic_auth_is_401_without_a_login_attempt(component, prosody, inbox):
    await inbox.checkpoint(component, "the start")  # logs the admin in
    before = prosody_connections(prosody)
    headers = [basic(user, "bobpass") for user in (
        "@localhost", "a@@b", 'a"b@localhost', "localhost", "bob@localhost/res", LONG + "@localhost")]
    headers += [{"Authorization": value} for value in (
        "Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),  # not base64; not UTF-8
        "Basic " + base64.b64encode(b"bob@localhost").decode(), "Bearer token")]  # no password; other scheme
    await all_refused(component, inbox, [stream(message(), "", auth=auth, status=401) for auth in headers])
    assert prosody_connections(prosody) == before, "a login was attempted for an invalid user name"


# --- equivalent spellings of one JID -----------------------------------------------------------


async def test_percent_encoded_case_and_unicode_forms_reach_the_same_entity(component, inbox):
    reference = await send(component, "GET", "/rest/adhoc/localhost?type=application/json")
    assert reference.status == 200
    for path in ("/rest/adhoc/%6Cocalhost", "/rest/adhoc/LOCALHOST", "/rest/adhoc/%4C%4F%43%41%4C%48%4F%53%54",
                 "/rest/adhoc/" + quote("ｌｏｃａｌｈｏｓｔ")):  # fullwidth letters, folded by NFKC
        answer = await send(component, "GET", path + "?type=application/json")
        assert (answer.status, answer.json()) == (200, reference.json()), path

    in_the_url = {
        "BOB@LOCALHOST": "BOB@LOCALHOST",
        "%62ob": "%62ob@localhost",
        "%40": "bob%40localhost",
        "fullwidth": quote("ｂｏｂ@ｌｏｃａｌｈｏｓｔ"),
        "zero-width space": quote("\u200bbob@localhost"),
    }
    for name, jid in in_the_url.items():
        answer = await send(component, "POST", "/rest/stream/" + jid, body=message(name, to="nobody@localhost"),
                            headers=XML)
        assert answer.status == 200, f"{name}: {answer.text}"
        index = await inbox.wait_for(lambda s: s.name == "message" and s["body"] == name)
        assert str(inbox.stanzas[index]["to"].bare) == "bob@localhost", name
    for to in ("BoB@LocalHost", "ＢＯＢ@localhost"):
        answer = await send(component, "POST", "/rest/stream/", body=message(to, to=to), headers=XML)
        assert answer.status == 200, f"{to}: {answer.text}"
        await inbox.wait_for(lambda s: s.name == "message" and s["body"] == to)

    # A resource may hold quotes and angle brackets: escaped, they never become markup.
    resource = "x'\"><body>injected</body><iq type=\"set\"/>"
    answer = await send(component, "POST", "/rest/stream/bob@localhost/" + quote(resource),
                        body=message("original", to="nobody@localhost"), headers=XML)
    assert answer.status == 200, answer.text
    index = await inbox.wait_for(lambda s: s.name == "message" and "original" in (s["body"] or ""))
    received = inbox.stanzas[index]
    assert received["body"] == "original" and received["to"].resource == resource
    assert len(received.xml.findall("{jabber:client}body")) == 1
    inbox.seen = index + 1
    await inbox.checkpoint(component, "the injection attempt")  # and no extra stanza came with it


# --- paths -------------------------------------------------------------------------------------


TRAVERSALS = [
    "/rest/../etc/passwd",
    "/rest/%2e%2e/etc/passwd",
    "/rest/%2E%2E/%2E%2E/etc/passwd",
    "/rest/stream/../../x",
    "/rest/stream/..%2F..%2Fetc%2Fpasswd",
    "/rest/stream/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/rest/health/..%2f..%2f..%2fetc%2fpasswd",
    "/rest/adhoc/..%2f..%2fetc%2fpasswd",
    "/rest/adhoc/../../etc/passwd",
    "/rest/..%5c..%5cetc%5cpasswd",
    "/rest/stream/%2e%2e/%2e%2e/scripts/rest/stream/stream.py",
    "/rest/health/../../scripts/rest/stream/stream.py",
    "/rest//etc/passwd",
    "//etc/passwd",
    "/rest/stream/....//....//etc/passwd",
    "/rest/%252e%252e/etc/passwd",
    "/rest/%c0%ae%c0%ae/etc/passwd",
    "/etc/passwd",
]


async def test_path_traversal_never_serves_a_file(component, inbox):
    failures = []
    body = message("traversal").encode()
    for target in TRAVERSALS:
        for method, extra, payload in (("GET", "", b""), ("POST", f"Content-Type: application/xml\n"
                                                                  f"Content-Length: {len(body)}\n", body)):
            status, text = await raw(component, raw_head(component, method, target, extra), payload)
            if status not in (400, 404) or "reason" not in text:
                failures.append(f"{method} {target}: {status} {text[:300]}")
            if any(secret in text for secret in (PASSWD_LINE, "class Stream(Handler)", "import ")):
                failures.append(f"{method} {target} served a file: {text[:300]}")
        try:
            await inbox.checkpoint(component, f"traversal {target}")
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


# --- /rest/stream bodies that are not exactly one stanza ---------------------------------------


NOT_ONE_STANZA = [
    (f'<message xmlns="urn:example:evil" to="{BOB}"><body>x</body></message>', "Not a stanza"),
    (f'<message xmlns="jabber:server" to="{BOB}"><body>x</body></message>', "Not a stanza"),
    (f'<stream:message xmlns:stream="http://etherx.jabber.org/streams" to="{BOB}"/>', "Not a stanza"),
    (f'<stream:stream xmlns:stream="http://etherx.jabber.org/streams" to="{BOB}"/>', "Not a stanza"),
    (f'<db:result xmlns:db="jabber:server:dialback" to="{BOB}">key</db:result>', "Not a stanza"),
    (f'<handshake to="{BOB}">0123</handshake>', "Not a stanza"),
    (f'<iq type="error" to="{BOB}"><ping xmlns="urn:xmpp:ping"/></iq>', "type get or set"),
    (f'<iq to="{BOB}"><ping xmlns="urn:xmpp:ping"/></iq>', "type get or set"),
    (f'<iq type="result" to="{BOB}" id="r1"/>', "type get or set"),
    (f'<iq type="get" to="{BOB}"/>', "exactly one child"),
    (f'<iq type="get" to="{BOB}">text only</iq>', "exactly one child"),
    (f'<iq type="set" to="{BOB}"><ping xmlns="urn:xmpp:ping"/><ping xmlns="urn:xmpp:ping"/></iq>',
     "exactly one child"),
    (f'<message to="{BOB}"><body>1</body></message><message to="{BOB}"><body>2</body></message>', "Malformed XML"),
    (f'<iq type="get" to="{BOB}"><ping xmlns="urn:xmpp:ping"/></iq><iq type="get" to="{BOB}"/>', "Malformed XML"),
    ("   \n\t  ", "No data received"),
]


async def test_stream_refuses_what_is_not_one_stanza(component, inbox):
    await all_refused(component, inbox, [stream(body, reason) for body, reason in NOT_ONE_STANZA])
