"""The caller sessions' own c2s client (tigase_rest.xmpp.c2s) against a scripted c2s server.

Each test's server is a script over a real socket: what the client sent is asserted as the server
saw it, and the client is judged by what its user notices (exceptions, statuses, replies).
The real servers are in tests/integration (Prosody, with and without STARTTLS) and ejabberd_tests.
"""

from __future__ import annotations

import asyncio
import time
import base64
import contextlib
import gc
import hashlib
import logging
import re
import socket
import ssl
import subprocess
import weakref
from xml.etree import ElementTree
from xml.etree.ElementTree import Element, SubElement

import pytest
from scramp import ScramException, ScramMechanism
from slixmpp.jid import JID

from tigase_rest.config import Config, XmppConfig
from tigase_rest.errors import HttpError
from tigase_rest.xmpp import c2s
from tigase_rest.xmpp.sessions import AuthFailed, CallerSession, SessionClosed

PASSWORD = "pencil,=é"  # a comma and an equals sign must not break SCRAM's attribute syntax
SALT = b"salt-of-the-test"
ITERATIONS = 4096
HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          "from='localhost' id='{id}' version='1.0' xml:lang='en'>")
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"


# --- the scripted server ----------------------------------------------------------------------


class Conn:
    """The server's side of one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.received = b""  # everything the client sent, decrypted
        self._pos = 0
        self.streams = 0

    async def expect(self, marker: str, timeout: float = 5) -> str:
        """What the client sent up to and including ``marker`` (waits for it)."""
        needle = marker.encode()
        while needle not in self.received[self._pos:]:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                raise EOFError(f"the client closed the connection before sending {marker!r}")
            self.received += chunk
        end = self.received.index(needle, self._pos) + len(needle)
        text, self._pos = self.received[self._pos:end].decode(), end
        return text

    async def expect_element(self, name: str) -> Element:
        text = await self.expect(f"</{name}>")
        start = text.index(f"<{name}")
        return ElementTree.fromstring(text[start:])

    async def until_closed(self, timeout: float = 5) -> bytes:
        """Read until the client closes the connection; what came before it."""
        with contextlib.suppress(ConnectionResetError):  # the client may close with our data unread
            while chunk := await asyncio.wait_for(self.reader.read(65536), timeout):
                self.received += chunk
        return self.received[self._pos:]

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def open_stream(self, features: str) -> None:
        await self.expect("version='1.0'>")
        self.streams += 1
        self.send(HEADER.format(id=f"s{self.streams}") + f"<stream:features>{features}</stream:features>")


def mechanisms(*names: str) -> str:
    return f"<mechanisms xmlns='{SASL}'>" + "".join(f"<mechanism>{n}</mechanism>" for n in names) + "</mechanisms>"


class FakeServer:
    def __init__(self, script, ssl_context: ssl.SSLContext | None = None):
        self.script = script
        self.ssl_context = ssl_context
        self.conns: list[Conn] = []
        self.failures: list[BaseException] = []
        self._tasks: list[asyncio.Task] = []

    async def _handle(self, reader, writer) -> None:
        self._tasks.append(asyncio.current_task())
        conn = Conn(reader, writer)
        self.conns.append(conn)
        try:
            await self.script(conn)
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failures.append(e)

    @contextlib.asynccontextmanager
    async def running(self):
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            for conn in self.conns:
                conn.writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def conn(self) -> Conn:
        assert len(self.conns) == 1, f"{len(self.conns)} connections"
        return self.conns[0]

    async def done(self, timeout: float = 5) -> None:
        """Wait for the script to end and fail the test if it failed."""
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
        if self.failures:
            raise self.failures[0]


def scram_server(mechanism: str, password: str):
    """The server side of SCRAM: scramp's, holding ``password`` for every user."""
    scheme = ScramMechanism(mechanism)
    auth_info = scheme.make_auth_info(password, iteration_count=ITERATIONS, salt=SALT)
    return scheme.make_server(lambda _user: auth_info)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(element: Element) -> bytes:
    return base64.b64decode(element.text or "")


async def sasl(conn: Conn, *, password: str = PASSWORD, tamper_signature: bool = False) -> Element:
    """Answer a SCRAM or PLAIN exchange; returns the client's <auth/>."""
    auth = await conn.expect_element("auth")
    if auth.get("mechanism") == "PLAIN":
        valid = unb64(auth) == b"\0user\0" + password.encode()
        conn.send(f"<success xmlns='{SASL}'/>" if valid else f"<failure xmlns='{SASL}'><not-authorized/></failure>")
        return auth
    scram = scram_server(auth.get("mechanism"), password)
    scram.set_client_first(unb64(auth).decode())
    conn.send(f"<challenge xmlns='{SASL}'>{b64(scram.get_server_first().encode())}</challenge>")
    try:
        scram.set_client_final(unb64(await conn.expect_element("response")).decode())
    except ScramException:
        conn.send(f"<failure xmlns='{SASL}'><not-authorized/></failure>")
        return auth
    server_final = scram.get_server_final().encode()
    if tamper_signature:
        server_final = b"v=" + b64(hashlib.sha1(b"not the key").digest()).encode()
    conn.send(f"<success xmlns='{SASL}'>{b64(server_final)}</success>")
    return auth


async def bind(conn: Conn, session: str = "", resource: str | None = None) -> Element:
    """Offer binding (and ``session``), bind; returns the client's bind request."""
    await conn.open_stream(BIND + session)
    request = await conn.expect_element("iq")
    asked = request.find("{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}resource").text
    conn.send(f"<iq type='result' id='{request.get('id')}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
              f"<jid>user@localhost/{resource or asked}</jid></bind></iq>")
    return request


async def logged_in(conn: Conn, offer: tuple[str, ...] = ("SCRAM-SHA-1", "PLAIN")) -> None:
    await conn.open_stream(mechanisms(*offer))
    await sasl(conn)
    await bind(conn)


def session_for(port: int, tls: str = "none", ca_file: str | None = None, iq_timeout: float = 5) -> CallerSession:
    config = Config(xmpp=XmppConfig(c2s_host="127.0.0.1", c2s_port=port, c2s_tls=tls, iq_timeout=iq_timeout))
    return CallerSession(config, JID("user@localhost"), ssl.create_default_context(cafile=ca_file))


async def login(server: FakeServer, tls: str = "none", ca_file: str | None = None, timeout: float = 5) -> CallerSession:
    session = session_for(server.port, tls, ca_file)
    await session.login(PASSWORD, timeout)
    return session


def ping(stanza_id: str = "ping-1") -> Element:
    iq = Element("iq", {"type": "get", "to": "localhost", "id": stanza_id})
    SubElement(iq, "{urn:xmpp:ping}ping")
    return iq


# --- logging in ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offer, chosen", [
    (("PLAIN", "SCRAM-SHA-1"), "SCRAM-SHA-1"),
    (("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "PLAIN"), "SCRAM-SHA-256"),
])
async def test_scram_login_proves_the_password_and_binds_what_the_server_returns(offer, chosen):
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms(*offer))
        auth = await sasl(conn)
        assert auth.get("mechanism") == chosen
        assert unb64(auth).startswith(b"n,,n=user,r=")  # no channel binding, no authzid
        request = await bind(conn, resource="server-chosen")
        assert re.fullmatch(r"tigase-rest-[0-9a-f]{8}", request.find(".//{*}resource").text)

    async with FakeServer(script).running() as server:
        session = await login(server)
        await server.done()
        assert session.alive
        assert session.bound == "user@localhost/server-chosen"
        sent = server.conn.received.decode()
        assert sent.count("<auth") == 1 and "<presence" not in sent and "jabber:iq:roster" not in sent
        assert "xmpp-session" not in sent  # not offered: not sent
        assert server.conn.streams == 2  # the stream was restarted after SASL
        assert PASSWORD not in repr([getattr(session, name, None) for name in dir(session)])
        session.close()


async def test_plain_is_used_without_tls_only_in_mode_none():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("PLAIN", "X-OAUTH2"))
        auth = await conn.expect_element("auth")
        assert auth.get("mechanism") == "PLAIN" and unb64(auth) == b"\0user\0" + PASSWORD.encode()
        conn.send(f"<success xmlns='{SASL}'/>")
        await bind(conn)

    async with FakeServer(script).running() as server:
        session = await login(server)
        await server.done()
        assert session.alive
        session.close()


async def test_a_server_signature_that_does_not_verify_fails_the_login():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("SCRAM-SHA-1"))
        await sasl(conn, tamper_signature=True)
        return await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server)
        await server.done()
    assert e.value.status == 502 and "server signature did not verify" in e.value.reason
    assert "<iq" not in server.conn.received.decode()  # nothing was sent on the unproven stream


async def test_a_sasl_failure_is_refused_credentials_after_exactly_one_attempt():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"))
        await sasl(conn, password="another password")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(AuthFailed):
            await login(server)
        await server.done()
    assert server.conn.received.decode().count("<auth") == 1


async def test_no_usable_mechanism_is_a_502():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("DIGEST-MD5", "EXTERNAL", "SCRAM-SHA-1-PLUS"))
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server)
        await server.done()
    assert e.value.status == 502
    assert e.value.reason == "The XMPP server offers no login method we may use (is TLS required?)"
    assert "<auth" not in server.conn.received.decode()


async def test_starttls_mode_refuses_a_server_without_starttls_before_any_password_leaves():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("PLAIN", "SCRAM-SHA-1"))
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server, tls="starttls")
        await server.done()
    assert e.value.status == 502 and "STARTTLS" in e.value.reason
    assert "<auth" not in server.conn.received.decode()


@pytest.mark.parametrize("offered, expected", [
    ("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>", True),
    ("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>", False),
])
async def test_the_legacy_session_iq_is_sent_only_when_the_server_requires_it(offered, expected):
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("SCRAM-SHA-1"))
        await sasl(conn)
        await bind(conn, session=offered)
        if expected:
            request = await conn.expect_element("iq")
            assert request.find("{urn:ietf:params:xml:ns:xmpp-session}session") is not None
            conn.send(f"<iq type='result' id='{request.get('id')}'/>")

    async with FakeServer(script).running() as server:
        session = await login(server)
        await server.done()
        assert session.alive
        assert ("xmpp-session" in server.conn.received.decode()) is expected
        session.close()


async def test_a_refused_bind_is_a_502():
    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("SCRAM-SHA-1"))
        await sasl(conn)
        await conn.open_stream(BIND)
        request = await conn.expect_element("iq")
        conn.send(f"<iq type='error' id='{request.get('id')}'><error type='cancel'>"
                  f"<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server)
        await server.done()
    assert e.value.status == 502 and "not-allowed" in e.value.reason


async def test_login_timeout_is_a_504_and_closes_the_attempt():
    async def script(conn: Conn) -> None:
        await conn.until_closed()  # says nothing at all

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server, timeout=0.3)
        await server.done()
    assert e.value.status == 504 and "login" in e.value.reason


async def test_an_unreachable_port_and_a_server_hanging_up_are_503_retry_later():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(HttpError) as e:
        await session_for(closed_port).login(PASSWORD, 5)
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "5"

    async def script(conn: Conn) -> None:
        await conn.open_stream(mechanisms("SCRAM-SHA-1"))
        await conn.expect("</auth>")
        conn.writer.close()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server)
        await server.done()
    assert e.value.status == 503 and e.value.headers["Retry-After"] == "5"


async def test_a_stream_error_during_login_is_a_503():
    async def script(conn: Conn) -> None:
        await conn.expect("version='1.0'>")
        conn.send(HEADER.format(id="s1") + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                                           "</stream:error></stream:stream>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server)
        await server.done()
    assert e.value.status == 503 and "host-unknown" in e.value.reason
    assert server.conn.received.decode().endswith("</stream:stream>")


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "localhost.crt", folder / "localhost.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return str(cert), server


async def test_direct_tls_login_and_request(certificate):
    ca_file, server_context = certificate

    async def script(conn: Conn) -> None:
        await logged_in(conn, offer=("PLAIN",))
        request = await conn.expect_element("iq")
        conn.send(f"<iq type='result' id='{request.get('id')}' from='localhost'/>")
        await conn.until_closed()

    async with FakeServer(script, server_context).running() as server:
        session = await login(server, tls="direct", ca_file=ca_file)
        reply = await session.request(ping())
        assert reply.get("type") == "result"
        session.close()
        await server.done()
    assert server.conn.received.decode().endswith("</stream:stream>")


async def test_starttls_login_with_the_certificate_verified(certificate):
    ca_file, server_context = certificate

    async def script(conn: Conn) -> None:
        await conn.open_stream("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
        await conn.expect("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        conn.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await conn.writer.start_tls(server_context)
        await logged_in(conn, offer=("PLAIN", "SCRAM-SHA-1"))

    async with FakeServer(script).running() as server:
        session = await login(server, tls="starttls", ca_file=ca_file)
        await server.done()
        assert session.alive and session.bound.startswith("user@localhost/tigase-rest-")
        session.close()


async def test_a_certificate_from_another_ca_is_a_502_and_no_password_leaves(certificate, tmp_path):
    _, server_context = certificate
    other = tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-keyout", str(tmp_path / "other.key"), "-out", str(other)],
                   check=True, capture_output=True, timeout=60)

    async def script(conn: Conn) -> None:
        await conn.open_stream("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await conn.expect("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        conn.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await conn.writer.start_tls(server_context)
            await conn.until_closed()

    async with FakeServer(script).running() as server:
        with pytest.raises(HttpError) as e:
            await login(server, tls="starttls", ca_file=str(other))
        await server.done()
    assert e.value.status == 502 and "certificate verify failed" in e.value.reason
    assert "<auth" not in server.conn.received.decode()


# --- after login ----------------------------------------------------------------------------------


async def test_an_iq_request_gets_its_own_reply_with_the_callers_id():
    async def script(conn: Conn) -> None:
        await logged_in(conn)
        request = await conn.expect_element("iq")
        assert request.get("id") != "caller-id" and request.get("to") == "localhost"
        conn.send(f"<iq type='result' id='other' from='localhost'/>"  # not ours: ignored
                  f"<message from='someone@localhost'><body>ignored</body></message>"
                  f"<iq type='result' id='{request.get('id')}' from='localhost'>"
                  f"<query xmlns='urn:example'>{'x' * 100_000}</query></iq>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        reply = await session.request(ping("caller-id"))
        assert reply.get("id") == "caller-id" and reply.find("{urn:example}query").text == "x" * 100_000
        assert len(session.iqs) == 0
        # The parser keeps the elements of the last stanza it read; keepalive() lets go of it.
        gone = weakref.ref(reply.find("{urn:example}query"))
        del reply
        session.keepalive()
        await asyncio.sleep(0)  # the loop's handle that woke this task holds the reply's future until it returns
        gc.collect()
        assert gone() is None
        session.close()
        await server.done()


async def test_an_iq_get_from_the_server_is_answered_service_unavailable():
    async def script(conn: Conn) -> None:
        await logged_in(conn)
        conn.send("<iq type='get' id='s2c-1' from='localhost' to='user@localhost/x'><ping xmlns='urn:xmpp:ping'/></iq>")
        answer = await conn.expect_element("iq")
        assert (answer.get("type"), answer.get("id"), answer.get("to")) == ("error", "s2c-1", "localhost")
        # parsed out of its stream, so without jabber:client
        assert answer.find("error/{urn:ietf:params:xml:ns:xmpp-stanzas}service-unavailable") is not None
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        await asyncio.sleep(0.1)
        session.close()
        await server.done()


async def test_keepalive_writes_one_space_and_close_ends_the_stream():
    async def script(conn: Conn) -> None:
        await logged_in(conn)
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        session.keepalive()
        session.close()
        assert not session.alive
        session.keepalive()  # nothing on a closed session
        session.close()  # twice is harmless
        await server.done()
    assert server.conn.received.decode().endswith("</iq> </stream:stream>")


async def test_a_dropped_connection_fails_the_pending_request_and_logs_once(caplog):
    async def script(conn: Conn) -> None:
        await logged_in(conn)
        await conn.expect("</iq>")
        conn.writer.close()

    caplog.set_level(logging.INFO, logger="tigase_rest.xmpp.c2s")
    async with FakeServer(script).running() as server:
        session = await login(server)
        with pytest.raises(SessionClosed) as e:
            await session.request(ping())
        await server.done()
    assert e.value.sent and e.value.status == 503
    assert not session.alive
    with pytest.raises(SessionClosed) as e:
        await session.request(ping())
    assert not e.value.sent
    lines = [r.getMessage() for r in caplog.records if "closed" in r.getMessage()]
    assert lines == ["Session of user@localhost closed: the XMPP server closed the connection"]


async def test_a_stream_error_or_stream_end_ends_the_session():
    async def script(conn: Conn) -> None:
        await logged_in(conn)
        await conn.expect("</iq>")
        conn.send("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        with pytest.raises(SessionClosed):
            await session.request(ping())
        await server.done()
    assert not session.alive
    assert server.conn.received.decode().endswith("</stream:stream>")


async def test_an_oversized_stanza_closes_the_session(monkeypatch, caplog):
    monkeypatch.setattr(c2s, "MAX_STANZA_BYTES", 256 * 1024)

    async def script(conn: Conn) -> None:
        await logged_in(conn)
        await conn.expect("</iq>")
        conn.send("<message><body>")
        for _ in range(100):
            conn.send("x" * 10_000)
            await conn.writer.drain()
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        with pytest.raises(SessionClosed):
            await session.request(ping())
        await server.done()
    assert not session.alive
    assert any(r.levelno == logging.ERROR and "over 262144 bytes" in r.getMessage() for r in caplog.records)


async def test_many_small_stanzas_are_no_oversized_one(monkeypatch):
    monkeypatch.setattr(c2s, "MAX_STANZA_BYTES", 64 * 1024)

    async def script(conn: Conn) -> None:
        await logged_in(conn)
        for n in range(2000):
            conn.send(f"<message id='{n}'><body>{'y' * 100}</body></message>")
        await conn.writer.drain()
        request = await conn.expect_element("iq")
        conn.send(f"<iq type='result' id='{request.get('id')}' from='localhost'/>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        await asyncio.sleep(0.2)
        assert (await session.request(ping())).get("type") == "result"
        session.close()
        await server.done()


async def test_after_keepalive_lets_go_of_the_parser_the_stream_reads_on_with_the_headers_prefixes():
    async def script(conn: Conn) -> None:
        await conn.expect("version='1.0'>")
        # Prefixes declared on the stream header hold for every stanza of the stream.
        header = ("<?xml version='1.0'?><s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' "
                  "xmlns:x='urn:example:x' version='1.0'>")
        conn.send(header + f"<s:features>{mechanisms('SCRAM-SHA-1')}</s:features>")
        await sasl(conn)
        await conn.expect("version='1.0'>")
        conn.send(header + f"<s:features>{BIND}</s:features>")
        request = await conn.expect_element("iq")
        conn.send(f"<iq type='result' id='{request.get('id')}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<jid>user@localhost/r</jid></bind></iq>")
        for _ in range(2):
            request = await conn.expect_element("iq")
            conn.send(f"<iq type='result' id='{request.get('id')}' from='localhost'><x:answer>yes</x:answer></iq>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        for _ in range(2):
            session.keepalive()
            reply = await session.request(ping())
            assert reply.find("{urn:example:x}answer").text == "yes"
        session.close()
        await server.done()


async def test_a_stanza_cut_inside_an_attribute_survives_a_keepalive_between_its_parts():
    first_part_sent = asyncio.Event()

    async def script(conn: Conn) -> None:
        await logged_in(conn)
        request = await conn.expect_element("iq")
        # ">" may stand unescaped in an attribute value: the cut looks like the end of a tag.
        conn.send(f"<iq type='result' id='{request.get('id')}' from='localhost' note='a>")
        first_part_sent.set()
        await conn.expect(" ")  # the keepalive
        conn.send("b'/>")
        await conn.until_closed()

    async with FakeServer(script).running() as server:
        session = await login(server)
        reply = asyncio.ensure_future(session.request(ping()))
        await first_part_sent.wait()
        await asyncio.sleep(0.05)
        session.keepalive()
        assert (await reply).get("note") == "a>b"
        session.close()
        await server.done()


async def test_the_pool_sweep_keeps_live_sessions_alive_and_closes_idle_ones():
    from tigase_rest.config import AuthConfig
    from tigase_rest.xmpp.sessions import CallerPool

    async def script(conn: Conn) -> None:
        await logged_in(conn)
        await conn.until_closed()

    pool = CallerPool(Config(auth=AuthConfig(session_idle_timeout=0.2)))
    async with FakeServer(script).running() as server:
        kept, idle = await login(server), await login(server)
        kept.last_used = time.monotonic()  # the logins may have taken a while on a loaded machine
        idle.last_used -= 10
        pool._sessions.update({"kept@localhost": kept, "idle@localhost": idle})
        pool.start()
        try:
            await asyncio.sleep(0.15)  # one sweep (every idle/2 s)
            assert list(pool._sessions) == ["kept@localhost"] and kept.alive and not idle.alive
        finally:
            await pool.close()
        await server.done()
    kept_conn, idle_conn = server.conns
    assert kept_conn.received.decode().endswith("</iq> </stream:stream>")  # the keepalive, then close()
    assert idle_conn.received.decode().endswith("</iq></stream:stream>")  # closed by the sweep, no keepalive
