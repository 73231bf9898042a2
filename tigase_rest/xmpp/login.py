"""The one XMPP login (RFC 6120: STARTTLS, SASL, stream restart, resource binding, the legacy
session IQ) as a sans-IO step machine, driven by both transports: the c2s client (``c2s.py``)
and the BOSH pre-binding client (``features/bosh``).

The machine reads parsed top-level elements and answers with a ``Step``: what to send (XML text)
and what the transport must do before the next element is read::

    login = Login("alice", password, resource="web")   # AuthFailed: a password SASLprep refuses
    step = Step(WAIT)                                   # the stream is opened: its features come first
    while step.state != BOUND:
        send step.send (if any; step.secret: it carries a password or a proof, never log it)
        STARTTLS: start TLS, open a new stream     RESTART: open a new stream (BOSH: xmpp:restart='true')
        DERIVE:   step = login.derive() (in a thread unless login.derive_inline); go on without reading
        then:     step = login.receive(next top-level element)
    login.jid                                           # the full JID the server bound

Errors are raised: ``AuthFailed`` (the server refused the credentials), ``LoginError`` (the
server did something a login cannot go on from: its ``reason`` says what) and its subclasses
``NoStartTls``, ``NoMechanism`` and ``BadSignature``, which each transport words for its user.

Rules, whichever the transport:
- exactly one SASL attempt: a <failure/> is the answer (trying the next mechanism would double
  the failures the server counts against the account);
- SCRAM-SHA-256, then SCRAM-SHA-1 (the ``scramp`` package), then PLAIN, and PLAIN only on an
  encrypted stream or where the transport allows it in the clear;
- a SCRAM success whose server signature does not verify is not a login (the server does not know
  the password, whatever its <success/> says);
- at most ``MAX_ITERATIONS`` SCRAM iterations (scramp itself refuses fewer than 4,096); the key
  derivation is a step of its own, so a transport can keep it off its event loop;
- the legacy session IQ only when the server lists <session/> without <optional/>.
"""

from __future__ import annotations

import base64
import binascii
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from scramp import ScramClient, ScramException
from scramp.utils import saslprep

from ..coding import local_name
from .stanzas import CLIENT_NS, error_of

STREAMS_NS = "http://etherx.jabber.org/streams"
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"

FEATURES = f"{{{STREAMS_NS}}}features"
IQ = f"{{{CLIENT_NS}}}iq"

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")  # best first; PLAIN after them
# Past this the derivation could hold a thread for seconds: a server asking for it is refused.
MAX_ITERATIONS = 1_000_000
# Below this many SCRAM iterations the derivation (~0.25 µs each) runs inline: cheaper than a
# thread hop. Above it, a thread keeps the event loop free.
INLINE_ITERATIONS = 20_000

# What a Step asks of the transport (see the module docstring).
WAIT = "wait"
STARTTLS = "starttls"
RESTART = "restart"
DERIVE = "derive"
BOUND = "bound"


class AuthFailed(Exception):
    """The server refused the credentials (SASL <failure/>), or no server could accept them."""

    def __init__(self, condition: str = "", text: str = ""):
        super().__init__(condition + (f": {text}" if text else ""))
        self.condition = condition
        self.text = text


class LoginError(Exception):
    """The server did something the login cannot go on from."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NoStartTls(LoginError):
    """STARTTLS was required and the server does not offer it (``refused``: it answered <failure/>)."""

    def __init__(self, refused: bool):
        super().__init__("the server refused STARTTLS" if refused else "the server does not offer STARTTLS")
        self.refused = refused


class NoMechanism(LoginError):
    """No SASL mechanism the server offers may be used here."""

    def __init__(self, offered: list[str], why: str = ""):
        super().__init__(f"no SASL mechanism we may use{why} (offered: {', '.join(offered) or 'none'})")
        self.offered = offered


class BadSignature(LoginError):
    """The server's SCRAM signature did not verify: it may not be the server holding the account."""

    def __init__(self):
        super().__init__("the server's SCRAM signature did not verify")


class Step:
    """What to send now (``send``; ``secret`` when it carries a password or a proof) and what to
    do before the next element (``state``)."""

    __slots__ = ("state", "send", "secret")

    def __init__(self, state: str, send: str = "", secret: bool = False):
        self.state, self.send, self.secret = state, send, secret

    def __repr__(self) -> str:
        return f"Step({self.state!r}, {'(secret)' if self.secret else repr(self.send)})"


class Login:
    """One login attempt as ``user`` (a localpart), optionally asking to act as ``authzid``.

    ``starttls``: the first features must offer STARTTLS and it is used. ``secure``: the stream is
    encrypted already (direct TLS, HTTPS). ``plain_in_clear``: PLAIN may be used without either.
    """

    def __init__(self, user: str, password: str, *, resource: str, authzid: str = "", starttls: bool = False,
                 secure: bool = False, plain_in_clear: bool = False):
        try:
            self._user, self._password = saslprep(user), saslprep(password)
        except ScramException:  # no server can hold such a password (it applies SASLprep too)
            raise AuthFailed("", "the user name or password is not valid for SASL (SASLprep)") from None
        self._authzid = authzid
        self._resource = resource
        self._starttls = starttls
        self._secure = secure
        self._plain_in_clear = plain_in_clear
        self._expect = self._features_for_tls if starttls else self._features_for_sasl
        self._scram: ScramClient | None = None
        self._final: bytes | None = None  # SCRAM: the server's final message, when it came in a last challenge
        self._features: Element | None = None
        self.mechanism = ""
        self.jid = ""  # the full JID the server bound

    @property
    def derive_inline(self) -> bool:
        """Whether ``derive()`` is cheap enough to call on an event loop."""
        return self._scram is not None and int(self._scram.iterations) <= INLINE_ITERATIONS

    def receive(self, element: Element) -> Step:
        """The next top-level element from the server; the step that follows."""
        return self._expect(element)

    def derive(self) -> Step:
        """The SCRAM key derivation and the client's final message (PBKDF2: may take milliseconds)."""
        assert self._scram is not None  # DERIVE comes only after the server's first message
        try:
            final = self._scram.get_client_final()
        except ScramException as e:
            raise LoginError(f"SCRAM: {e}") from None
        self._password = ""
        self._expect = self._sasl_outcome
        return _sasl("response", final.encode("utf-8"))

    # --- the states -------------------------------------------------------------------------------

    def _features_for_tls(self, element: Element) -> Step:
        features = _features(element)
        if features.find(f"{{{TLS_NS}}}starttls") is None:
            raise NoStartTls(refused=False)
        self._expect = self._proceed
        return Step(WAIT, f"<starttls xmlns='{TLS_NS}'/>")

    def _proceed(self, element: Element) -> Step:
        if element.tag != f"{{{TLS_NS}}}proceed":
            raise NoStartTls(refused=True)
        self._secure = True
        self._expect = self._features_for_sasl
        return Step(STARTTLS)

    def _features_for_sasl(self, element: Element) -> Step:
        features = _features(element)
        offered = [(m.text or "").strip() for m in features.iter(f"{{{SASL_NS}}}mechanism")]
        plain_allowed = "PLAIN" in offered and (self._secure or self._plain_in_clear)
        if self._authzid:
            # Acting as another user: only PLAIN carries an authzid here (scramp writes no GS2 authzid).
            if not plain_allowed:
                raise NoMechanism(offered, " to ask for another identity (only PLAIN carries one)")
            mechanism: str | None = "PLAIN"
        else:
            mechanism = next((m for m in SCRAM_MECHANISMS if m in offered), None)
            if mechanism is None and plain_allowed:
                mechanism = "PLAIN"
        if mechanism is None:
            raise NoMechanism(offered)
        self.mechanism = mechanism
        if mechanism == "PLAIN":
            data = f"{self._authzid}\0{self._user}\0{self._password}".encode("utf-8")
            self._password = ""
            self._expect = self._sasl_outcome
            return _sasl("auth", data, mechanism)
        self._scram = ScramClient([mechanism], self._user, self._password)
        self._expect = self._server_first
        return _sasl("auth", self._scram.get_client_first().encode("utf-8"), mechanism)

    def _server_first(self, element: Element) -> Step:
        if element.tag == f"{{{SASL_NS}}}failure":
            raise _auth_failed(element)
        if element.tag != f"{{{SASL_NS}}}challenge":
            raise LoginError(f"<{local_name(element.tag)}/> where a SASL challenge was due")
        assert self._scram is not None  # this state follows the client's first message
        try:
            self._scram.set_server_first(_sasl_text(element))
        except ScramException as e:
            raise LoginError(f"SCRAM: {e}") from None
        iterations = int(self._scram.iterations)
        if iterations > MAX_ITERATIONS:
            raise LoginError(f"SCRAM: iteration count {iterations} out of range (at most {MAX_ITERATIONS})")
        return Step(DERIVE)

    def _sasl_outcome(self, element: Element) -> Step:
        """<success/> (SCRAM: with the server's final message, or after a last challenge with it)."""
        if element.tag == f"{{{SASL_NS}}}failure":
            raise _auth_failed(element)
        if element.tag == f"{{{SASL_NS}}}challenge" and self._final is None:
            self._final = _sasl_data(element)  # one last challenge at most
            return _sasl("response", b"")
        if element.tag != f"{{{SASL_NS}}}success":
            raise LoginError(f"unexpected <{local_name(element.tag)}/> at the end of SASL")
        if self._scram is not None:
            final = _sasl_data(element) or self._final or b""
            try:
                self._scram.set_server_final(final.decode("utf-8"))
            except (ScramException, UnicodeDecodeError):
                raise BadSignature() from None
            self._scram = None
        self._expect = self._features_for_bind
        return Step(RESTART)

    def _features_for_bind(self, element: Element) -> Step:
        features = _features(element)
        if features.find(f"{{{BIND_NS}}}bind") is None:
            raise LoginError("no resource binding offered after the login")
        self._features = features
        self._expect = self._bound
        return Step(WAIT, f"<iq xmlns='{CLIENT_NS}' type='set' id='bind-1'><bind xmlns='{BIND_NS}'>"
                          f"<resource>{escape(self._resource)}</resource></bind></iq>")

    def _bound(self, element: Element) -> Step:
        reply = _reply(element, "bind-1", f"binding the resource {self._resource!r}")
        if reply is None:
            return Step(WAIT)  # nothing else is ours during login
        jid = (reply.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid") or "").strip()
        if not jid:
            raise LoginError("the resource binding answer names no JID")
        self.jid = jid
        assert self._features is not None  # kept from the features that offered the bind
        session = self._features.find(f"{{{SESSION_NS}}}session")
        self._features = None
        # RFC 3921's session IQ: only servers that still require it get it (RFC 6121 dropped it).
        if session is None or session.find(f"{{{SESSION_NS}}}optional") is not None:
            return Step(BOUND)
        self._expect = self._session
        return Step(WAIT, f"<iq xmlns='{CLIENT_NS}' type='set' id='session-1'><session xmlns='{SESSION_NS}'/></iq>")

    def _session(self, element: Element) -> Step:
        if _reply(element, "session-1", "establishing the session") is None:
            return Step(WAIT)
        return Step(BOUND)


def _features(element: Element) -> Element:
    if element.tag != FEATURES:
        raise LoginError(f"<{local_name(element.tag)}/> where the stream features were due")
    return element


def _reply(element: Element, stanza_id: str, what: str) -> Element | None:
    """The result for ``stanza_id``; None for anything else; LoginError for its error."""
    if element.tag != IQ or element.get("id") != stanza_id or element.get("type") not in ("result", "error"):
        return None
    if element.get("type") == "result":
        return element
    condition, text = error_of(element)
    raise LoginError(f"{what} refused ({condition or 'no condition'}{': ' + text if text else ''})")


def _sasl(name: str, data: bytes, mechanism: str = "") -> Step:
    payload = base64.b64encode(data).decode("ascii") or "="
    attr = f" mechanism={quoteattr(mechanism)}" if mechanism else ""
    return Step(WAIT, f"<{name} xmlns='{SASL_NS}'{attr}>{payload}</{name}>", secret=True)


def _sasl_data(element: Element) -> bytes:
    text = (element.text or "").strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise LoginError("SASL data is not base64") from None


def _sasl_text(element: Element) -> str:
    try:
        return _sasl_data(element).decode("utf-8")
    except UnicodeDecodeError:
        raise LoginError("SCRAM: the server's message is not UTF-8") from None


def _auth_failed(failure: Element) -> AuthFailed:
    condition = next((local_name(c.tag) for c in failure if local_name(c.tag) != "text"), "no condition")
    text = (failure.findtext(f"{{{SASL_NS}}}text") or "").strip()
    return AuthFailed(condition, text)
