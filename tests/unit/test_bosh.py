"""BOSH pre-binding: the XML on the wire, the command's answers, and the exchange against a
scripted BOSH endpoint (the real one, Prosody, is in tests/integration/test_bosh_prebind.py)."""

from __future__ import annotations

import asyncio
import base64
import time
from xml.etree import ElementTree

import pytest
from aiohttp import web
from scramp import ScramException, ScramMechanism
from slixmpp.jid import JID

from tigase_rest.config import XmppConfig
from tigase_rest.errors import HttpError
from tigase_rest.features import bosh
from tigase_rest.features.bosh import stanzas

B = "{http://jabber.org/protocol/httpbind}"
XBOSH = "{urn:xmpp:xbosh}"
C = "{jabber:client}"


def parse(data: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(data)


# --- XML on the wire ------------------------------------------------------------------------------


def test_session_request_is_xep_0206_creation():
    body = parse(stanzas.session_request(123, "example.com", 1, 60))
    assert body.tag == B + "body"
    assert body.attrib == {"rid": "123", "to": "example.com", "hold": "1", "wait": "60", "ver": "1.6",
                           "{http://www.w3.org/XML/1998/namespace}lang": "en", XBOSH + "version": "1.0"}
    assert len(body) == 0


def test_session_body_carries_payload_restart_and_terminate():
    body = parse(stanzas.session_body(7, "s-1", "<iq xmlns='jabber:client' type='get' id='x'/>"))
    assert (body.get("rid"), body.get("sid"), body.get("type")) == ("7", "s-1", None)
    assert body[0].tag == C + "iq" and body[0].get("id") == "x"

    restart = parse(stanzas.session_body(8, "s-1", restart="example.com"))
    assert (restart.get(XBOSH + "restart"), restart.get("to")) == ("true", "example.com")
    assert parse(stanzas.session_body(9, "s-1", terminate=True)).get("type") == "terminate"


def test_attribute_values_are_escaped():
    assert parse(stanzas.session_body(1, "a'b\"<c>")).get("sid") == "a'b\"<c>"


def test_parse_body_accepts_a_body_and_reports_terminate_and_garbage():
    body = bosh.parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind' sid='s'><x xmlns='y'/></body>")
    assert body.get("sid") == "s" and body[0].tag == "{y}x"
    with pytest.raises(bosh.BoshTerminated) as terminated:
        bosh.parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>")
    assert terminated.value.condition == "item-not-found"
    with pytest.raises(ValueError, match="instead of a BOSH <body/>"):
        bosh.parse_body(b"<html><body/></html>")
    with pytest.raises(ValueError, match="malformed XML"):
        bosh.parse_body(b"")
    with pytest.raises(ValueError, match="malformed XML"):
        bosh.parse_body(b"<!DOCTYPE x [<!ENTITY a 'b'>]><body xmlns='http://jabber.org/protocol/httpbind'>&a;</body>")


def test_payloads_without_their_own_namespace_are_jabber_client_stanzas():
    body = bosh.parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind'><iq type='result' id='b1'/>"
                           b"<iq xmlns='jabber:client' type='result' id='b2'/><x xmlns='y'/></body>")
    assert [child.tag for child in stanzas.payloads(body)] == [C + "iq", C + "iq", "{y}x"]


# --- the command's answers ------------------------------------------------------------------------


def test_form_is_tigase_s():
    command = stanzas.form("bosh@example.com", "", "30")["command"]
    assert {k: command[k] for k in ("jid", "node", "status", "type", "title")} == {
        "jid": "bosh@example.com", "node": "pre-bind-bosh-session", "status": "executing", "type": "form",
        "title": "Pre-bind BOSH user session"}
    assert command["instructions"] == "Fill out this form to create and pre-bind BOSH user session."
    assert [(f["var"], f["type"], f["value"]) for f in command["fields"]] == [
        ("FORM_TYPE", "hidden", "http://jabber.org/protocol/admin"), ("from", "jid-single", None),
        ("hold", "text-single", "1"), ("wait", "text-single", "30")]


def test_result_and_error_shapes():
    bound = stanzas.Prebound("a@example.com/r", "sid-1", 42, "1", "60", "xmpp.example.com")
    command = stanzas.result("bosh@example.com", bound)["command"]
    assert command["status"] == "completed"
    assert [(f["var"], f["type"], f["value"]) for f in command["fields"]] == [
        ("from", "jid-single", "a@example.com/r"), ("hostname", "jid-single", "xmpp.example.com"),
        ("rid", "text-single", "42"), ("sid", "text-single", "sid-1"), ("hold", "text-single", "1"),
        ("wait", "text-single", "60")]
    error = stanzas.error_result("bosh@example.com", bosh.NO_PERMISSION, "why")["command"]
    assert error["fields"] == [{"var": "Error", "type": "fixed", "value": "You do not have enough permissions"}]
    assert (error["status"], error["note"]) == ("completed", {"value": "why", "type": "error"})


@pytest.mark.parametrize("text, expected", [("", 60), ("1", 1), ("600", 600)])
def test_counts(text, expected):
    assert bosh.parse_count("wait", text, 60, 600) == expected


@pytest.mark.parametrize("text", ["0", "601", "-1", "1.5", "x", "٣"])
def test_bad_counts(text):
    with pytest.raises(ValueError, match="'wait' must be a whole number from 1 to 600"):
        bosh.parse_count("wait", text, 60, 600)


def test_users():
    assert bosh.parse_user("Alice@Example.com/Web") == JID("alice@example.com/Web")
    for text in ("example.com", "a@b@c", "@example.com"):
        with pytest.raises(ValueError):
            bosh.parse_user(text)


def run(*fields, bosh_url="http://127.0.0.1:1/http-bind", login="alice@example.com", admin=False):
    prebinding = bosh.BoshPrebinding(XmppConfig(bosh_url=bosh_url, domain="example.com", iq_timeout=2.0))
    request = {"node": prebinding.NODE, "fields": [(var, [value]) for var, value in fields], "sessionid": None,
               "action": None}
    return asyncio.run(prebinding.execute("bosh@example.com", request, login, "pw", admin))["command"]


def test_commands_list_names_the_one_command():
    prebinding = bosh.BoshPrebinding(XmppConfig(bosh_url="http://x/http-bind"))
    assert prebinding.commands_list("bosh@example.com") == {"items": [
        {"jid": "bosh@example.com", "node": "pre-bind-bosh-session", "name": "Pre-bind BOSH user session"}]}


def test_no_bosh_url_is_501_with_the_key_to_set():
    with pytest.raises(HttpError) as e:
        run(("from", "alice@example.com"), bosh_url="")
    assert e.value.status == 501 and "[xmpp] bosh_url" in e.value.reason


def test_no_from_answers_the_form_keeping_hold_and_wait():
    command = run(("from", ""), ("hold", "2"))
    assert command["type"] == "form"
    assert [f.get("value") for f in command["fields"]][2:] == ["2", "60"]


def test_users_may_prebind_only_themselves_admins_anyone():
    refused = run(("from", "bob@example.com"))
    assert refused["fields"][0]["value"] == bosh.NO_PERMISSION
    # an admin gets past the check: here to the unreachable BOSH URL
    with pytest.raises(HttpError) as e:
        run(("from", "bob@example.com"), admin=True)
    assert e.value.status == 503


# --- the exchange, against a scripted BOSH endpoint ----------------------------------------------


class FakeBosh:
    """Answers as Prosody does, with knobs for what other servers (or broken ones) do."""

    def __init__(self, *, mechanisms=("SCRAM-SHA-1", "PLAIN"), features_in_creation=True, sasl="success",
                 honour_authzid=False, session_feature=True, session_required=False, granted_wait=None,
                 creation_condition=None, http_status=200, raw=None, hang_on=None, tamper_signature=False):
        self.mechanisms = mechanisms
        self.features_in_creation = features_in_creation
        self.sasl = sasl
        self.honour_authzid = honour_authzid
        self.session_feature = session_feature
        self.session_required = session_required
        self.tamper_signature = tamper_signature
        self.scram = None
        self.granted_wait = granted_wait
        self.creation_condition = creation_condition
        self.http_status = http_status
        self.raw = raw
        self.hang_on = hang_on
        self.requests: list[ElementTree.Element] = []
        self.user = ""
        self.features_sent = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/http-bind", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = parse(await request.read())
        self.requests.append(body)
        step = self.step(body)
        if step == self.hang_on:
            await asyncio.sleep(3600)
        if self.http_status != 200:
            return web.Response(status=self.http_status, text="no")
        if self.raw is not None:
            return web.Response(body=self.raw, content_type="text/xml")
        return web.Response(text=f"<body xmlns='http://jabber.org/protocol/httpbind' "
                                 f"xmlns:stream='http://etherx.jabber.org/streams' {self.answer(step, body)}</body>",
                            content_type="text/xml")

    @staticmethod
    def step(body) -> str:
        if body.get("type") == "terminate":
            return "terminate"
        if body.get("sid") is None:
            return "create"
        if body.get(XBOSH + "restart"):
            return "restart"
        if len(body) == 0:
            return "poll"
        child = body[0]
        return child[0].tag.rsplit("}", 1)[1] if child.tag == C + "iq" else child.tag.rsplit("}", 1)[1]

    def answer(self, step: str, body) -> str:
        """The rest of the <body ...: attributes, '>', children."""
        if step == "create":
            if self.creation_condition:
                return f"type='terminate' condition='{self.creation_condition}'>"
            wait = self.granted_wait or body.get("wait")
            return f"sid='s-1' hold='1' wait='{wait}' ver='1.6'>" + (self.features() if self.features_in_creation else "")
        if step == "poll":
            return ">" + ("" if self.features_sent else self.features())
        failure = "><failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>nope</text></failure>"
        if step == "auth" and body[0].get("mechanism") == "PLAIN":
            if self.sasl == "failure":
                return failure
            authzid, authcid, _ = base64.b64decode(body[0].text).decode().split("\0")
            self.user = authzid if authzid and self.honour_authzid else f"{authcid}@example.com"
            return "><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        if step == "auth":  # SCRAM, scramp's server side; the password is "pw"
            scheme = ScramMechanism(body[0].get("mechanism"))
            auth_info = scheme.make_auth_info("pw" if self.sasl == "success" else "other", iteration_count=4096)

            def auth_fn(user: str):
                self.user = f"{user}@example.com"
                return auth_info

            self.scram = scheme.make_server(auth_fn)
            self.scram.set_client_first(base64.b64decode(body[0].text).decode())
            first = base64.b64encode(self.scram.get_server_first().encode()).decode()
            return f"><challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{first}</challenge>"
        if step == "response":
            try:
                self.scram.set_client_final(base64.b64decode(body[0].text).decode())
            except ScramException:
                return failure
            final = self.scram.get_server_final() if not self.tamper_signature else "v=" + "A" * 28
            return f"><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{base64.b64encode(final.encode()).decode()}</success>"
        if step == "restart":
            optional = "" if self.session_required else "<optional/>"
            session = f"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'>{optional}</session>"
            return (f"><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                    f"{session if self.session_feature else ''}</stream:features>")
        iq = body[0]
        if step == "bind":
            resource = iq.findtext("{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}resource")
            return (f"><iq xmlns='jabber:client' type='result' id='{iq.get('id')}'>"
                    f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{self.user}/{resource}</jid></bind></iq>")
        if step == "session":
            return f"><iq xmlns='jabber:client' type='result' id='{iq.get('id')}'/>"
        if step == "terminate":
            return "type='terminate'>"
        raise AssertionError(f"unexpected request {step}")

    def features(self) -> str:
        self.features_sent = True
        mechanisms = "".join(f"<mechanism>{m}</mechanism>" for m in self.mechanisms)
        return f"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{mechanisms}</mechanisms></stream:features>"

    def steps(self) -> list[str]:
        return [self.step(body) for body in self.requests]


@pytest.fixture
def endpoint(aiohttp_server):
    async def start(**knobs) -> tuple[FakeBosh, str]:
        fake = FakeBosh(**knobs)
        server = await aiohttp_server(fake.app())
        return fake, str(server.make_url("/http-bind"))
    return start


ALICE, ADMIN = JID("alice@example.com"), JID("admin@example.com")


async def prebind(url, user=ALICE, login=ALICE, *, timeout=5.0):
    return await bosh.prebind(url, user, login, "pw", hold=1, wait=60, timeout=timeout)


async def test_full_exchange_with_scram_and_the_rid_handed_out_is_the_next_one(endpoint):
    fake, url = await endpoint(granted_wait="30", session_required=True)
    bound = await prebind(url, JID("alice@example.com/tab"))
    assert fake.steps() == ["create", "auth", "response", "restart", "bind", "session"]
    rids = [int(body.get("rid")) for body in fake.requests]
    assert rids == list(range(rids[0], rids[0] + 6)) and 0 < rids[0] <= 2**52
    assert bound == stanzas.Prebound("alice@example.com/tab", "s-1", rids[-1] + 1, "1", "30", "127.0.0.1")
    assert fake.requests[1][0].get("mechanism") == "SCRAM-SHA-1"  # preferred to the PLAIN also offered
    assert base64.b64decode(fake.requests[1][0].text).startswith(b"n,,n=alice,r=")


async def test_plain_over_http_when_it_is_all_the_server_offers(endpoint):
    fake, url = await endpoint(mechanisms=("PLAIN",))
    await prebind(url, JID("alice@example.com/tab"))
    assert fake.steps()[:3] == ["create", "auth", "restart"]
    assert base64.b64decode(fake.requests[1][0].text) == b"\0alice\0pw"


async def test_bare_jid_gets_a_random_resource_and_no_session_iq_unless_required(endpoint):
    fake, url = await endpoint(session_feature=False)
    first, second = await prebind(url), await prebind(url)
    assert fake.steps()[:5] == ["create", "auth", "response", "restart", "bind"] and "session" not in fake.steps()
    assert first.jid.startswith("alice@example.com/") and first.jid != second.jid
    fake, url = await endpoint()  # <session><optional/></session>, as Prosody lists it
    await prebind(url)
    assert "session" not in fake.steps()


async def test_features_missing_from_the_creation_response_are_polled_for(endpoint):
    fake, url = await endpoint(features_in_creation=False)
    await prebind(url)
    assert fake.steps()[:3] == ["create", "poll", "auth"]


async def test_a_scram_signature_that_does_not_verify_is_502_and_nothing_is_bound(endpoint):
    fake, url = await endpoint(tamper_signature=True)
    with pytest.raises(HttpError) as e:
        await prebind(url)
    assert e.value.status == 502 and "SCRAM signature that did not verify" in e.value.reason
    assert fake.steps() == ["create", "auth", "response", "terminate"]


async def test_admin_for_another_user_when_the_server_ignores_authzid(endpoint):
    fake, url = await endpoint(mechanisms=("PLAIN",))
    with pytest.raises(bosh.PrebindRefused) as refused:
        await prebind(url, ALICE, ADMIN)
    assert refused.value.text == bosh.NOT_SUPPORTED
    assert "bound admin@example.com/" in refused.value.reason and "(s-1) was terminated" in refused.value.reason
    assert base64.b64decode(fake.requests[1][0].text) == b"alice@example.com\0admin\0pw"
    assert fake.steps()[-1] == "terminate" and fake.requests[-1].get("sid") == "s-1"


async def test_admin_for_another_user_when_the_server_honours_authzid(endpoint):
    fake, url = await endpoint(mechanisms=("PLAIN",), honour_authzid=True)
    bound = await prebind(url, JID("alice@example.com/web"), ADMIN)
    assert bound.jid == "alice@example.com/web" and "terminate" not in fake.steps()


async def test_admin_for_another_domain_is_refused_without_any_request(endpoint):
    fake, url = await endpoint()
    with pytest.raises(bosh.PrebindRefused, match="own domain"):
        await prebind(url, JID("alice@other.example"), ADMIN)
    assert fake.requests == []


@pytest.mark.parametrize("mechanisms, steps", [(("SCRAM-SHA-1",), ["create", "auth", "response", "terminate"]),
                                               (("PLAIN",), ["create", "auth", "terminate"])])
async def test_sasl_failure_of_the_caller_is_502_and_the_session_terminated(endpoint, mechanisms, steps):
    fake, url = await endpoint(sasl="failure", mechanisms=mechanisms)
    with pytest.raises(HttpError) as e:
        await prebind(url)
    assert e.value.status == 502 and "refused the login of alice@example.com (SASL not-authorized" in e.value.reason
    assert fake.steps() == steps


async def test_sasl_failure_of_an_admin_for_another_user_is_not_supported(endpoint):
    fake, url = await endpoint(sasl="failure", mechanisms=("PLAIN",))
    with pytest.raises(bosh.PrebindRefused) as refused:
        await prebind(url, ALICE, ADMIN)
    assert refused.value.text == bosh.NOT_SUPPORTED and fake.steps()[-1] == "terminate"


async def test_no_usable_mechanism_is_502_naming_what_was_offered(endpoint):
    fake, url = await endpoint(mechanisms=("DIGEST-MD5",))
    with pytest.raises(HttpError) as e:
        await prebind(url)
    assert e.value.status == 502 and "no SASL mechanism we may use (offered: DIGEST-MD5)" in e.value.reason
    assert fake.steps() == ["create", "terminate"]


@pytest.mark.parametrize("condition, expected", [("host-unknown", bosh.DOMAIN_UNKNOWN),
                                                 ("improper-addressing", bosh.DOMAIN_UNKNOWN)])
async def test_unknown_domain_is_tigase_s_error(endpoint, condition, expected):
    _, url = await endpoint(creation_condition=condition)
    with pytest.raises(bosh.PrebindRefused) as refused:
        await prebind(url)
    assert refused.value.text == expected and condition in refused.value.reason


async def test_other_creation_refusals_are_502(endpoint):
    _, url = await endpoint(creation_condition="policy-violation")
    with pytest.raises(HttpError) as e:
        await prebind(url)
    assert e.value.status == 502 and "refused to create a session (policy-violation)" in e.value.reason


@pytest.mark.parametrize("knobs, reason", [
    ({"http_status": 404}, "answered HTTP 404 Not Found"),
    ({"raw": b"<html>oops</html>"}, "answered <html/> instead of a BOSH <body/>"),
    ({"raw": b"not xml"}, "answered malformed XML"),
    ({"raw": b"<body xmlns='http://jabber.org/protocol/httpbind'>" + b"x" * (300 * 1024) + b"</body>"},
     "answered more than 262144 bytes"),
])
async def test_broken_answers_are_502_with_the_reason(endpoint, knobs, reason):
    _, url = await endpoint(**knobs)
    with pytest.raises(HttpError) as e:
        await prebind(url)
    assert e.value.status == 502 and reason in e.value.reason


async def test_unreachable_is_503():
    with pytest.raises(HttpError) as e:
        await prebind("http://127.0.0.1:1/http-bind")
    assert e.value.status == 503 and e.value.reason == "Cannot reach the XMPP server's BOSH service"
    assert "127.0.0.1:1" in e.value.detail  # the address goes to the log only


async def test_no_answer_is_504_within_the_timeout_and_the_session_is_terminated(endpoint):
    fake, url = await endpoint(hang_on="bind")
    started = time.monotonic()
    with pytest.raises(HttpError) as e:
        await prebind(url, timeout=0.5)
    assert e.value.status == 504 and "within 0.5 s" in e.value.reason
    assert time.monotonic() - started < 2
    assert fake.steps()[-1] == "terminate"
