"""Security against a real component and Prosody: failed-login limits (per JID, per address, under
concurrency), secrets kept out of the logs, API keys limited to paths and hosts, open access,
roles, and c2s logins that fail closed without TLS."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from xml.etree import ElementTree

import aiohttp
import pytest
import yarl
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rest import ADMIN, ALICE, KEY, Answer, basic, call
from tools.prosody import is_privilege_notice

ADMIN_NS = "http://jabber.org/protocol/admin#"
XML = {"Content-Type": "application/xml"}


def prosody_connections(prosody) -> int:
    """Login attempts Prosody saw. At its configured level (info) Prosody 0.12 logs no line per SASL
    failure, but one "Client connected" per c2s connection, and every login is a new connection."""
    return prosody.log_path.read_text(errors="replace").count("Client connected")


async def from_address(component, address: str, *, auth, headers=None) -> Answer:
    """GET /rest/adhoc/localhost over a TCP connection from ``address`` (any 127.x.y.z works on loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(component.url + "/rest/adhoc/localhost",
                            headers={**KEY, **auth, **(headers or {})}) as response:
            return Answer(response.status, dict(response.headers), await response.text())


def assert_limited(answer: Answer, window: float) -> None:
    assert answer.status == 429, f"{answer.status} {answer.text}"
    assert "Too many failed logins" in answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= window + 1, answer.headers


# --- brute force -------------------------------------------------------------------------------


async def test_failed_logins_are_limited_per_jid_and_per_address_then_reset(component_factory, prosody):
    window = 2
    component = component_factory(auth={"max_failures": 3, "failure_window": window})
    # Per JID: three wrong passwords for alice, each from another address...
    for n, address in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4")):
        answer = await from_address(component, address, auth=basic("alice@localhost", f"wrong-{n}"))
        assert answer.status == 401, answer.text
    seen = prosody_connections(prosody)
    # ...then alice is refused from anywhere, even with the right password, and the server sees nothing.
    assert_limited(await from_address(component, "127.0.0.5", auth=basic("alice@localhost", "wrong-3")), window)
    assert_limited(await from_address(component, "127.0.0.5", auth=ALICE), window)
    assert prosody_connections(prosody) == seen, "a limited login still reached the server"
    assert (await from_address(component, "127.0.0.5", auth=basic("bob@localhost", "bobpass"))).status == 200

    # Per address: three JIDs from one address; then that address is refused for any JID.
    for n in range(3):
        answer = await from_address(component, "127.0.0.6", auth=basic(f"nobody-{n}@localhost", "guess"))
        assert answer.status == 401, answer.text
    seen = prosody_connections(prosody)
    # (a password never verified: a verified one is served from the cache before any limiter)
    limited = await from_address(component, "127.0.0.6", auth=ADMIN)
    assert_limited(limited, window)
    # a forwarding header does not move the caller to another address
    assert_limited(await from_address(component, "127.0.0.6", auth=ADMIN,
                                      headers={"X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9"}), window)
    assert prosody_connections(prosody) == seen, "a limited login still reached the server"
    assert (await from_address(component, "127.0.0.6", auth=basic("bob@localhost", "bobpass"))).status == 200
    assert (await from_address(component, "127.0.0.7", auth=ADMIN)).status == 200

    # Once Retry-After has passed, both limits are gone (alice's began earlier).
    await asyncio.sleep(int(limited.headers["Retry-After"]))
    assert (await from_address(component, "127.0.0.8", auth=ALICE)).status == 200
    assert (await from_address(component, "127.0.0.6", auth=basic("carol@localhost", "x"))).status == 401


async def test_concurrent_wrong_passwords_cannot_outrun_the_limit(component_factory, prosody):
    """Thirty guesses sent at once: the limit must hold for attempts still in flight, not only for
    failures already counted."""
    component = component_factory(auth={"max_failures": 3, "failure_window": 60}, log={"level": "info"})
    seen = prosody_connections(prosody)
    answers = await asyncio.gather(*(
        from_address(component, "127.0.0.9", auth=basic("alice@localhost", f"guess-{n}")) for n in range(30)))
    statuses = sorted(a.status for a in answers)
    attempts = prosody_connections(prosody) - seen
    print(f"\n30 concurrent wrong passwords, max_failures 3: answers {statuses}; {attempts} logins reached Prosody")
    assert set(statuses) <= {401, 429}, statuses
    assert attempts <= 3, f"{attempts} password guesses reached the server (max_failures = 3)"


async def test_parallel_guesses_for_many_jids_from_one_address_reach_the_server_max_failures_times(
        component_factory, prosody):
    """Password spraying: one wrong password for each of 40 JIDs, all at once, from one address.
    Logins in flight count against the per-address limit: at most max_failures reach Prosody."""
    component = component_factory(auth={"max_failures": 3, "failure_window": 60}, log={"level": "info"})
    seen = prosody_connections(prosody)
    answers = await asyncio.gather(*(
        from_address(component, "127.0.0.10", auth=basic(f"spray-{n}@localhost", "Summer2024!")) for n in range(40)))
    statuses = [a.status for a in answers]
    attempts = prosody_connections(prosody) - seen
    print(f"\n40 concurrent guesses for 40 JIDs from one address, max_failures 3: {statuses.count(401)} x 401, "
          f"{statuses.count(429)} x 429; {attempts} logins reached Prosody")
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= 3 and attempts <= 3, (statuses, attempts)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in answers if a.status == 429)


async def test_the_owner_with_a_verified_password_is_not_locked_out_by_guesses(component_factory, prosody):
    component = component_factory(auth={"max_failures": 5, "failure_window": 60})
    admin = basic("admin@localhost", "adminpass")
    assert (await from_address(component, "127.0.0.11", auth=admin)).status == 200  # verified, cached
    for n in range(5):
        assert (await from_address(component, "127.0.0.11", auth=basic("admin@localhost", f"x{n}"))).status == 401
    assert_limited(await from_address(component, "127.0.0.11", auth=basic("admin@localhost", "x5")), 60)
    seen = prosody_connections(prosody)
    answer = await from_address(component, "127.0.0.11", auth=admin)
    assert answer.status == 200, f"the owner is locked out: {answer.status} {answer.text}"
    assert prosody_connections(prosody) == seen  # from the cache: the limiter still holds for guesses


async def new_user(component, password: str) -> str:
    jid = f"pw-{uuid.uuid4().hex[:8]}@localhost"
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "fields": [
            {"var": "accountjid", "value": jid}, {"var": "password", "value": password},
            {"var": "password-verify", "value": password}]}})
    assert answer.status == 200, answer.text
    return jid


async def post_as(component, jid: str, password: str) -> int:
    """/rest/stream needs no session of the caller's: a cached credential alone lets it through."""
    return (await call(component, "POST", "/rest/stream/", auth=basic(jid, password), headers=XML,
                       body='<message to="nobody@localhost"><body>x</body></message>')).status


async def status_within(seconds: float, probe, expected: int) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (status := await probe()) != expected and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return status


async def test_an_old_password_stops_working_after_a_change_through_the_api(component_factory):
    jid = f"ops-{uuid.uuid4().hex[:8]}@localhost"
    component = component_factory(auth={"admins": ["admin@localhost", jid]})
    assert (await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "fields": [
            {"var": "accountjid", "value": jid}, {"var": "password", "value": "old-pw"},
            {"var": "password-verify", "value": "old-pw"}]}})).status == 200
    assert await post_as(component, jid, "old-pw") == 200  # verified and cached
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "change-user-password",
        "fields": [{"var": "accountjid", "value": jid}, {"var": "password", "value": "new-pw"}]}})
    assert answer.status == 200, answer.text
    assert await post_as(component, jid, "old-pw") == 401  # at once: the API call itself forgot it
    assert await post_as(component, jid, "new-pw") == 200


async def test_an_old_password_stops_working_when_the_server_ends_the_session(component_factory, xmpp_client):
    """The password changed elsewhere (here: an admin's own XMPP client); Prosody then closes the
    user's sessions, the pooled one too, and the cached credential goes with it."""
    jid = f"ops-{uuid.uuid4().hex[:8]}@localhost"
    component = component_factory(auth={"admins": ["admin@localhost", jid]})
    assert (await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "add-user", "fields": [
            {"var": "accountjid", "value": jid}, {"var": "password", "value": "old-pw"},
            {"var": "password-verify", "value": "old-pw"}]}})).status == 200
    assert await post_as(component, jid, "old-pw") == 200
    admin = await xmpp_client("admin", resource="oob", presence=False)
    iq = admin.xmpp.make_iq_set(ito="localhost")
    iq.append(ElementTree.fromstring(
        f"<command xmlns='http://jabber.org/protocol/commands' node='{ADMIN_NS}change-user-password' "
        f"action='execute'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/admin</value></field>"
        f"<field var='accountjid'><value>{jid}</value></field><field var='password'><value>new-pw</value></field>"
        f"</x></command>"))
    assert (await iq.send(timeout=5))["type"] == "result"
    assert await status_within(2, lambda: post_as(component, jid, "old-pw"), 401) == 401
    assert await post_as(component, jid, "new-pw") == 200


async def test_end_user_session_through_the_api_makes_the_next_request_log_in_again(component):
    jid = await new_user(component, "pw")
    user = basic(jid, "pw")
    assert (await call(component, "GET", "/rest/adhoc/localhost", auth=user)).status == 200
    answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": ADMIN_NS + "end-user-session", "fields": [{"var": "accountjids", "value": [jid]}]}})
    assert answer.status == 200, answer.text
    logins = (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]["caller_logins"]
    assert (await call(component, "GET", "/rest/adhoc/localhost", auth=user)).status == 200
    health = (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]
    assert health["caller_logins"] == logins + 1


# --- secrets in logs ---------------------------------------------------------------------------


async def test_no_secret_reaches_the_log_even_at_debug(component_factory, prosody, xmpp_client):
    header_key, param_key = "hdr-" + secrets.token_hex(8), "prm-" + secrets.token_hex(8)
    component = component_factory(auth={"api_keys": [header_key, param_key]}, log={"level": "debug"})
    new_user, new_password, changed_password = ("sec-" + uuid.uuid4().hex[:8], "npw-" + secrets.token_hex(6),
                                                "cpw-" + secrets.token_hex(6))
    wrong = "wpw-" + secrets.token_hex(6)
    headers = {"Api-Key": header_key}
    bob = await xmpp_client("bob", resource="sec")
    got = asyncio.Queue()
    bob.xmpp.register_handler(Callback("got", MatchXPath("{jabber:client}message"),
                                       lambda m: got.put_nowait(m) if fresh(m) else None))

    async def ok(answer: Answer) -> Answer:
        assert answer.status == 200, f"{answer.status} {answer.text}"
        return answer

    await ok(await call(component, "GET", "/rest/adhoc/localhost", headers=headers))
    await ok(await call(component, "GET", f"/rest/adhoc/localhost?api-key={param_key}", auth=ALICE,
                        headers={"Api-Key": None}))
    await ok(await call(component, "POST", f"/rest/stream/bob@localhost/sec?api-key={param_key}",
                        headers={"Api-Key": None, **XML}, body="<message><body>secret test</body></message>"))
    assert (await asyncio.wait_for(got.get(), 5))["body"] == "secret test"
    assert (await call(component, "GET", "/rest/adhoc/localhost", auth=basic("bob@localhost", wrong),
                       headers=headers)).status == 401
    await ok(await call(component, "GET", "/rest/adhoc/localhost", auth=basic("bob@localhost", "bobpass"),
                        headers=headers))
    # passwords inside ad-hoc forms (text-private fields), both notations
    await ok(await call(component, "POST", "/rest/adhoc/localhost", headers=headers, body={"command": {
        "node": ADMIN_NS + "add-user", "fields": [
            {"var": "accountjid", "value": f"{new_user}@localhost"},
            {"var": "password", "value": new_password}, {"var": "password-verify", "value": new_password}]}}))
    await ok(await call(component, "GET", "/rest/adhoc/localhost", auth=basic(f"{new_user}@localhost", new_password),
                        headers=headers))
    await ok(await call(component, "POST", "/rest/adhoc/localhost", headers={**headers, **XML}, body=f"""<command>
  <node>{ADMIN_NS}change-user-password</node>
  <fields>
    <item><var>accountjid</var><value>{new_user}@localhost</value></item>
    <item><var>password</var><value>{changed_password}</value></item>
  </fields>
</command>"""))
    await ok(await call(component, "GET", "/rest/adhoc/localhost",
                        auth=basic(f"{new_user}@localhost", changed_password), headers=headers))

    log = component.log_text()
    assert "SEND:" in log and "RECV:" in log, "the component did not log at debug level"
    found = []
    for user, password in (("admin", "adminpass"), ("alice", "alicepass"), ("bob", "bobpass"), ("bob", wrong),
                           (new_user, new_password), (new_user, changed_password)):
        jid = f"{user}@localhost"
        forms = {
            "password": password,
            "Basic user:password": base64.b64encode(f"{jid}:{password}".encode()).decode(),
            "SASL PLAIN \\0user\\0password": base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
            "SASL PLAIN \\0jid\\0password": base64.b64encode(f"\0{jid}\0{password}".encode()).decode(),
            "SASL PLAIN jid\\0user\\0password": base64.b64encode(f"{jid}\0{user}\0{password}".encode()).decode(),
        }
        found += [f"{what} of {jid}" for what, text in forms.items() if text in log]
    for what, text in (("component secret", prosody.component_secret), ("API key (header)", header_key),
                       ("API key (parameter)", param_key)):
        if text in log:
            found.append(what)
    lines = [line[:300] for line in log.splitlines()
             if any(s in line for s in (new_password, changed_password, wrong, header_key, param_key, "alicepass"))]
    assert not found, f"secrets in the component's log: {found}\n" + "\n".join(lines[:10])


# --- API keys, roles, open access --------------------------------------------------------------


def fresh(message) -> bool:
    """Not Prosody noise, and not an offline message some earlier test left (those carry a delay)."""
    return not is_privilege_notice(message) and message.xml.find("{urn:xmpp:delay}delay") is None


class BobInbox:
    def __init__(self, client):
        self.messages = asyncio.Queue()
        client.xmpp.register_handler(Callback("inbox", MatchXPath("{jabber:client}message"),
                                              lambda m: self.messages.put_nowait(m) if fresh(m) else None))

    async def next_body(self) -> str:
        return (await asyncio.wait_for(self.messages.get(), 5))["body"]


async def test_api_keys_limited_to_paths_and_hosts_are_refused_elsewhere(component_factory, xmpp_client):
    component = component_factory(auth={"api_keys": [
        {"key": "stream-only", "paths": ["/rest/stream/.*"]},
        {"key": "host-only", "domains": ["api.example.test"]},
        "full-key",
    ]})
    bob = BobInbox(await xmpp_client("bob", resource="keys"))

    async def ask(key, path="/rest/adhoc/localhost", method="GET", body=None, host=None, raw=False):
        headers = {"Api-Key": key, **({"Host": host} if host else {}), **(XML if body else {})}
        if raw:  # the path goes on the wire as written
            async with aiohttp.ClientSession() as http:
                async with http.request(method, yarl.URL(component.url + path, encoded=True), data=body,
                                        headers={**ADMIN, **headers}) as r:
                    return Answer(r.status, dict(r.headers), await r.text())
        return await call(component, method, path, headers=headers, body=body)

    stanza = '<message to="bob@localhost/keys"><body>{}</body></message>'
    assert (await ask("stream-only", "/rest/stream/", "POST", stanza.format("stream-only"))).status == 200
    assert await bob.next_body() == "stream-only"
    for path in ("/rest/adhoc/localhost", "/rest/health", "/rest/adhoc/localhost?x=/rest/stream/"):
        answer = await ask("stream-only", path)
        assert answer.status == 403 and "not authorized to access /rest/" in answer.text, (path, answer.text)
    # A traversal under the allowed prefix reaches no other handler.
    answer = await ask("stream-only", "/rest/stream/..%2F..%2Fadhoc/localhost", "POST", stanza.format("x"), raw=True)
    assert answer.status == 400, answer.text

    assert (await ask("host-only", host="api.example.test")).status == 200
    assert (await ask("host-only", host="API.Example.Test:8080")).status == 200
    for host in (None, "api.example.test.evil.com", "evil.com", "example.test"):
        answer = await ask("host-only", host=host)
        assert answer.status == 403 and "not authorized" in answer.text, (host, answer.text)

    # An absolute-form target: its host is the one checked and its path the one routed, never a mix.
    port = int(component.url.rsplit(":", 1)[1])
    for target, host, expected in (("http://api.example.test/rest/health", "evil.com", b"200"),
                                   ("http://evil.com/rest/health", "api.example.test", b"403")):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nApi-Key: host-only\r\n"
                     f"Connection: close\r\n\r\n".encode())
        answer = await reader.read()
        writer.close()
        assert answer.split()[1] == expected, (target, answer[:300])
        assert (b"xmpp_link" if expected == b"200" else b"not authorized to access /rest/health") in answer

    assert (await ask("full-key")).status == 200
    for key in ("FULL-KEY", "full-ke", "full-keyy", "full-key\u00e9", "stream-onlyfull-key"):
        assert (await ask(key, "/rest/stream/", "POST", stanza.format("bad key"))).status == 403, key
    assert (await ask("full-key", "/rest/stream/", "POST", stanza.format("after"))).status == 200
    assert await bob.next_body() == "after"  # no "bad key" message came first


async def test_a_user_is_refused_on_admin_endpoints_and_nothing_happens(component, xmpp_client):
    bob = BobInbox(await xmpp_client("bob", resource="roles"))
    answer = await call(component, "POST", "/rest/stream/", auth=ALICE, headers=XML,
                        body='<message to="bob@localhost/roles"><body>from alice</body></message>')
    assert answer.status == 403 and "alice@localhost is not an admin" in answer.text
    name = "never-" + uuid.uuid4().hex[:8]
    answer = await call(component, "POST", "/rest/adhoc/localhost", auth=ALICE, body={"command": {
        "node": ADMIN_NS + "add-user", "fields": [
            {"var": "accountjid", "value": f"{name}@localhost"},
            {"var": "password", "value": "pw"}, {"var": "password-verify", "value": "pw"}]}})
    assert answer.status == 403 and answer.json()["error"]["condition"] == "forbidden", answer.text
    # the account was not created, and bob got nothing from alice
    assert (await call(component, "GET", "/rest/adhoc/localhost", auth=basic(f"{name}@localhost", "pw"))).status == 401
    assert (await call(component, "POST", "/rest/stream/", headers=XML,
                       body='<message to="bob@localhost/roles"><body>marker</body></message>')).status == 200
    assert await bob.next_body() == "marker"


async def test_open_access_key_and_open_access_mode(component_factory):
    component = component_factory(auth={"api_keys": [{"key": "open_access", "paths": ["/rest/health.*"]}, "k"]})
    stanza = '<message to="nobody@localhost"><body>x</body></message>'  # no account: nothing is stored
    assert (await call(component, "GET", "/rest/health", headers={"Api-Key": None})).status == 200
    answer = await call(component, "POST", "/rest/stream/", headers={"Api-Key": None, **XML}, body=stanza)
    assert answer.status == 403 and "Missing required 'Api-Key'" in answer.text
    for key in ("wrong", "open_access"):  # a wrong key is not "no key"; the name is not a key
        answer = await call(component, "GET", "/rest/health", headers={"Api-Key": key})
        assert answer.status == 403, (key, answer.text)
        answer = await call(component, "POST", "/rest/stream/", headers={"Api-Key": key, **XML}, body=stanza)
        assert answer.status == 403, (key, answer.text)
    assert (await call(component, "POST", "/rest/stream/", headers={"Api-Key": "k", **XML}, body=stanza)).status == 200
    assert component.stop() == 0  # one component JID: the next one takes over the link

    component = component_factory(auth={"open_access": True, "api_keys": []})
    assert (await call(component, "POST", "/rest/stream/", headers={"Api-Key": None, **XML}, body=stanza)).status == 200
    # open access drops the key, never the login or the role
    answer = await call(component, "POST", "/rest/stream/", auth=None, headers={"Api-Key": None, **XML}, body=stanza)
    assert answer.status == 401
    answer = await call(component, "POST", "/rest/stream/", auth=ALICE, headers={"Api-Key": None, **XML}, body=stanza)
    assert answer.status == 403


# --- TLS to c2s --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "direct"])
async def test_c2s_login_without_tls_fails_closed(component_factory, prosody, mode):
    """The test Prosody offers no TLS: with TLS required, no password may leave the component."""
    component = component_factory(xmpp={"c2s_tls": mode, "iq_timeout": 5}, log={"level": "debug"})
    for n in range(7):  # more than auth.max_failures (5): a server without TLS is no wrong password
        answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ALICE)
        assert 500 <= answer.status < 600, f"attempt {n}: {answer.status} {answer.text}"
        reason = answer.json()["error"]["reason"]
        assert "TLS" in reason or "SSL" in reason, reason
    answer = await call(component, "POST", "/rest/stream/", headers=XML,
                        body='<message to="nobody@localhost"><body>x</body></message>')
    assert 500 <= answer.status < 600 and ("TLS" in answer.text or "SSL" in answer.text), answer.text
    log = component.log_text()
    assert "SEND:" in log, "the component did not log at debug level"
    for sent in ('mechanism="PLAIN"', "mechanism='PLAIN'", "<auth ", "alicepass", "adminpass",
                 base64.b64encode(b"\0alice\0alicepass").decode()):
        assert sent not in log, f"{sent!r} was sent over an unencrypted stream"
    print(f"\nc2s_tls={mode} without TLS on the server: {answer.status} {reason}")


async def test_a_5xx_does_not_show_the_xmpp_servers_internal_address(component_factory, prosody):
    from tools.prosody import free_port

    closed = free_port()  # nothing listens there
    component = component_factory(xmpp={"c2s_port": closed, "c2s_tls": "none"})
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ALICE)
    assert answer.status == 503, answer.text
    reason = answer.json()["error"]["reason"]
    print(f"\nc2s port closed: 503 {reason}")
    assert str(closed) not in reason and "127.0.0.1" not in reason and "the XMPP server" in reason, reason
    assert str(closed) in component.log_text()  # the admin still finds it
    assert answer.headers["Server"] == "tigase-rest"
