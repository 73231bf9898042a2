"""The login step machine (xmpp/login.py): XML in, XML out, no I/O. The transports that drive it
are tested in test_c2s.py (TCP) and test_bosh.py (BOSH); real servers in tests/integration."""

from __future__ import annotations

import base64
import functools
from xml.etree import ElementTree

import pytest
from scramp import ScramClient, ScramException, ScramMechanism

from tigase_rest.xmpp import login as login_module
from tigase_rest.xmpp.login import (BOUND, DERIVE, RESTART, STARTTLS, WAIT, AuthFailed, BadSignature, Login,
                                    LoginError, NoMechanism, NoStartTls)

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "http://etherx.jabber.org/streams"
BIND = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"


def xml(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)


def features(inner: str) -> ElementTree.Element:
    return xml(f"<stream:features xmlns:stream='{STREAMS}'>{inner}</stream:features>")


def mechanisms(*names: str) -> ElementTree.Element:
    return features(f"<mechanisms xmlns='{SASL}'>" + "".join(f"<mechanism>{n}</mechanism>" for n in names)
                    + "</mechanisms>")


def sasl(name: str, data: bytes = b"") -> ElementTree.Element:
    return xml(f"<{name} xmlns='{SASL}'>{base64.b64encode(data).decode()}</{name}>")


def sent(step) -> ElementTree.Element:
    return xml(step.send)


def data(step) -> bytes:
    return base64.b64decode(sent(step).text)


def bind_and_finish(login: Login, session: str = "") -> None:
    request = sent(login.receive(features(BIND + session)))
    assert request.get("type") == "set" and request.find(".//{*}resource").text == "web <1>"
    step = login.receive(xml("<iq xmlns='jabber:client' type='result' id='other'/>"))  # not ours: waited past
    assert (step.state, step.send) == (WAIT, "")
    return login.receive(xml(f"<iq xmlns='jabber:client' type='result' id='{request.get('id')}'>"
                             f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@example.com/web</jid></bind></iq>"))


def scram_server(mechanism: str, password: str = "pencil"):
    scheme = ScramMechanism(mechanism)
    auth_info = scheme.make_auth_info(password, iteration_count=4096)
    return scheme.make_server(lambda _user: auth_info)


def test_plain_on_an_encrypted_stream_then_bind():
    login = Login("alice", "pä ss", resource="web <1>", secure=True)
    step = login.receive(mechanisms("PLAIN"))
    assert (step.state, step.secret, sent(step).get("mechanism")) == (WAIT, True, "PLAIN")
    assert data(step) == "\0alice\0pä ss".encode()
    assert "pä ss" not in repr(step)
    assert login.receive(sasl("success")).state == RESTART
    assert bind_and_finish(login).state == BOUND and login.jid == "alice@example.com/web"


def test_plain_carries_an_authzid():
    login = Login("admin", "pw", resource="r", authzid="alice@example.com", plain_in_clear=True)
    assert data(login.receive(mechanisms("PLAIN"))) == b"alice@example.com\0admin\0pw"


def test_plain_in_the_clear_only_when_allowed():
    with pytest.raises(NoMechanism) as e:
        Login("alice", "pw", resource="r").receive(mechanisms("PLAIN", "DIGEST-MD5"))
    assert e.value.offered == ["PLAIN", "DIGEST-MD5"]
    with pytest.raises(NoMechanism):
        Login("alice", "pw", resource="r", secure=True).receive(mechanisms())


@pytest.mark.parametrize("offered, chosen", [(("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"), "SCRAM-SHA-256"),
                                             (("PLAIN", "SCRAM-SHA-1"), "SCRAM-SHA-1")])
def test_scram_against_scramp_s_server_then_bind(offered, chosen):
    server = scram_server(chosen)
    login = Login("alice", "pencil", resource="web <1>", secure=True)
    step = login.receive(mechanisms(*offered))
    assert (sent(step).get("mechanism"), step.secret) == (chosen, True)
    server.set_client_first(data(step).decode())
    assert login.receive(sasl("challenge", server.get_server_first().encode())).state == DERIVE
    assert login.derive_inline  # 4096 iterations
    step = login.derive()
    server.set_client_final(data(step).decode())  # raises when the proof is wrong
    assert login.receive(sasl("success", server.get_server_final().encode())).state == RESTART
    assert bind_and_finish(login).state == BOUND


def test_scram_final_message_in_a_last_challenge_is_answered_empty():
    server = scram_server("SCRAM-SHA-1")
    login = Login("alice", "pencil", resource="r")
    server.set_client_first(data(login.receive(mechanisms("SCRAM-SHA-1"))).decode())
    login.receive(sasl("challenge", server.get_server_first().encode()))
    server.set_client_final(data(login.derive()).decode())
    step = login.receive(sasl("challenge", server.get_server_final().encode()))
    assert sent(step).tag == f"{{{SASL}}}response" and data(step) == b""
    assert login.receive(sasl("success")).state == RESTART


def test_wrong_password_is_auth_failed_with_the_condition():
    server = scram_server("SCRAM-SHA-256", password="other")
    login = Login("alice", "pencil", resource="r")
    server.set_client_first(data(login.receive(mechanisms("SCRAM-SHA-256"))).decode())
    login.receive(sasl("challenge", server.get_server_first().encode()))
    with pytest.raises(ScramException):
        server.set_client_final(data(login.derive()).decode())
    with pytest.raises(AuthFailed) as e:
        login.receive(xml(f"<failure xmlns='{SASL}'><not-authorized/><text>nope</text></failure>"))
    assert (e.value.condition, e.value.text) == ("not-authorized", "nope")


@pytest.mark.parametrize("final", [b"v=" + base64.b64encode(b"\0" * 32), b"", b"e=invalid-proof"])
def test_a_server_signature_that_does_not_verify_is_bad_signature(final):
    server = scram_server("SCRAM-SHA-256")
    login = Login("alice", "pencil", resource="r")
    server.set_client_first(data(login.receive(mechanisms("SCRAM-SHA-256"))).decode())
    login.receive(sasl("challenge", server.get_server_first().encode()))
    server.set_client_final(data(login.derive()).decode())
    with pytest.raises(BadSignature):
        login.receive(sasl("success", final))


@pytest.mark.parametrize("server_first", ["r=other,s=QSXCR+Q6sek8bf92,i=4096", "r=abc,s=QSXCR+Q6sek8bf92,i=4096",
                                          "r=abcdef,s=QSXCR+Q6sek8bf92,i=1000", "r=abcdef,s=QSXCR+Q6sek8bf92,i=1000001",
                                          "m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096", "r=abcdef,s=not base64!,i=4096"])
def test_bad_server_first_messages_and_iteration_counts_are_refused(monkeypatch, server_first):
    monkeypatch.setattr(login_module, "ScramClient", functools.partial(ScramClient, c_nonce="abc"))
    login = Login("user", "pencil", resource="r")
    login.receive(mechanisms("SCRAM-SHA-1"))
    with pytest.raises(LoginError, match="SCRAM"):
        login.receive(sasl("challenge", server_first.encode()))


def test_a_large_iteration_count_is_derived_off_the_loop():
    login = Login("user", "pencil", resource="r")
    nonce = data(login.receive(mechanisms("SCRAM-SHA-1"))).decode().rsplit("r=", 1)[1]
    assert login.receive(sasl("challenge", f"r={nonce}x,s=QSXCR+Q6sek8bf92,i=1000000".encode())).state == DERIVE
    assert not login.derive_inline


@pytest.mark.parametrize("mechanism, nonce, server_first, client_final, server_final", [
    # RFC 5802 section 5
    ("SCRAM-SHA-1", "fyko+d2lbbFgONRv9qkxdawL",
     "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
     "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
     "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
    # RFC 7677 section 3
    ("SCRAM-SHA-256", "rOprNGfwEbeRWgbNEkqO",
     "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
])
def test_scram_follows_the_rfc_examples(monkeypatch, mechanism, nonce, server_first, client_final, server_final):
    monkeypatch.setattr(login_module, "ScramClient", functools.partial(ScramClient, c_nonce=nonce))
    login = Login("user", "pencil", resource="r")
    assert data(login.receive(mechanisms(mechanism))) == b"n,,n=user,r=" + nonce.encode()
    login.receive(sasl("challenge", server_first.encode()))
    assert data(login.derive()) == client_final.encode()
    assert login.receive(sasl("success", server_final.encode())).state == RESTART


def test_another_identity_is_asked_for_with_plain_only():
    login = Login("admin", "pencil", resource="r", authzid="alice@example.com", secure=True)
    assert data(login.receive(mechanisms("SCRAM-SHA-256", "PLAIN"))) == b"alice@example.com\0admin\0pencil"
    with pytest.raises(NoMechanism) as e:
        Login("admin", "pencil", resource="r", authzid="alice@example.com").receive(mechanisms("SCRAM-SHA-1", "PLAIN"))
    assert "another identity" in str(e.value)


def test_a_password_saslprep_refuses_fails_before_anything_is_sent():
    with pytest.raises(AuthFailed):
        Login("alice", "bell\u0007", resource="r")


def test_starttls_first_when_required():
    login = Login("alice", "pw", resource="r", starttls=True)
    assert sent(login.receive(features("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))).tag.endswith("starttls")
    assert login.receive(xml("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")).state == STARTTLS
    assert data(login.receive(mechanisms("PLAIN"))) == b"\0alice\0pw"  # the stream is now encrypted
    with pytest.raises(NoStartTls) as e:
        Login("alice", "pw", resource="r", starttls=True).receive(mechanisms("PLAIN"))
    assert not e.value.refused
    login = Login("alice", "pw", resource="r", starttls=True)
    login.receive(features("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
    with pytest.raises(NoStartTls) as e:
        login.receive(xml("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
    assert e.value.refused


@pytest.mark.parametrize("session, expected", [
    ("", False),
    ("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>", False),
    ("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>", True),
])
def test_the_session_iq_only_when_required(session, expected):
    login = Login("alice", "pw", resource="web <1>", secure=True)
    login.receive(mechanisms("PLAIN"))
    login.receive(sasl("success"))
    step = bind_and_finish(login, session)
    assert (step.state == WAIT) is expected
    if expected:
        request = sent(step)
        assert request.find("{urn:ietf:params:xml:ns:xmpp-session}session") is not None
        assert login.receive(xml(f"<iq xmlns='jabber:client' type='result' id='{request.get('id')}'/>")).state == BOUND


def test_bind_errors_and_surprises_are_login_errors():
    login = Login("alice", "pw", resource="r", secure=True)
    login.receive(mechanisms("PLAIN"))
    with pytest.raises(LoginError, match="where a SASL challenge was due|at the end of SASL"):
        login.receive(features(""))
    login = Login("alice", "pw", resource="r", secure=True)
    login.receive(mechanisms("PLAIN"))
    login.receive(sasl("success"))
    with pytest.raises(LoginError, match="no resource binding offered"):
        login.receive(features(""))
    login = Login("alice", "pw", resource="r", secure=True)
    login.receive(mechanisms("PLAIN"))
    login.receive(sasl("success"))
    request = sent(login.receive(features(BIND)))
    with pytest.raises(LoginError, match=r"binding the resource 'r' refused \(not-allowed\)"):
        login.receive(xml(f"<iq xmlns='jabber:client' type='error' id='{request.get('id')}'><error type='cancel'>"
                          f"<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"))
    with pytest.raises(LoginError, match="where the stream features were due"):
        Login("alice", "pw", resource="r").receive(sasl("success"))
