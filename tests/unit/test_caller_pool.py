"""CallerPool.authenticate with the SASL login faked (the real one is shown against Prosody in
tests/integration/test_security.py): the per-address limit holds for logins in flight, a verified
password is served before any limiter, and a credential goes with its session or with forget()."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.jid import JID

from tigase_rest.config import from_dict
from tigase_rest.errors import HttpError
from tigase_rest.xmpp import sessions
from tigase_rest.xmpp.login import AuthFailed

PASSWORDS = {"admin@example.com": "adminpass", "alice@example.com": "alicepass"}


class Server:
    """The fake server behind CallerSession.login: counts logins; ``gate`` holds them in flight."""

    def __init__(self):
        self.logins: list[str] = []
        self.gate: asyncio.Event | None = None

    async def login(self, session: sessions.CallerSession, password: str, timeout: float) -> None:
        self.logins.append(str(session.jid))
        accepted = PASSWORDS.get(str(session.jid)) == password  # SASL first; the rest of the login later
        if self.gate is not None:
            await self.gate.wait()
        if not accepted:
            raise AuthFailed()
        session._alive = True


@pytest.fixture
def server(monkeypatch):
    fake = Server()
    monkeypatch.setattr(sessions.CallerSession, "login", lambda self, pw, t: fake.login(self, pw, t))
    return fake


def make_pool(**auth) -> sessions.CallerPool:
    config = from_dict({"xmpp": {"secret": "s", "component_jid": "http.example.com", "domain": "example.com"},
                        "auth": {"admins_from_server": False, "max_failures": 3, **auth}}, {})
    return sessions.CallerPool(config)


async def status_of(pool, jid: str, password: str, remote: str = "192.0.2.1") -> int:
    try:
        await asyncio.wait_for(pool.authenticate(JID(jid), password, remote), 2)
    except HttpError as e:
        return e.status
    return 200


async def test_parallel_guesses_for_many_jids_from_one_address_reach_the_server_max_failures_times(server):
    pool = make_pool()
    server.gate = asyncio.Event()
    guesses = [asyncio.ensure_future(status_of(pool, f"user{n}@example.com", "guess")) for n in range(200)]
    await asyncio.sleep(0.01)
    server.gate.set()
    statuses = await asyncio.gather(*guesses)
    assert len(server.logins) == 3
    assert sorted(statuses) == [401] * 3 + [429] * 197
    # and the address stays limited once they have failed
    assert await status_of(pool, "alice@example.com", "alicepass") == 429
    assert await status_of(pool, "alice@example.com", "alicepass", remote="192.0.2.2") == 200


async def test_429_for_logins_in_flight_names_the_address_and_retry_after(server):
    pool = make_pool(max_failures=1)
    server.gate = asyncio.Event()
    first = asyncio.ensure_future(status_of(pool, "alice@example.com", "alicepass"))
    await asyncio.sleep(0)
    with pytest.raises(HttpError) as e:
        await asyncio.wait_for(pool.authenticate(JID("bob@example.com"), "x", "192.0.2.1"), 1)
    assert e.value.status == 429 and "from this address" in e.value.reason
    assert e.value.headers["Retry-After"] == "1"
    server.gate.set()
    assert await first == 200


async def test_a_successful_login_does_not_consume_the_address_budget(server):
    pool = make_pool(max_failures=2)
    for n in range(10):  # ten different users log in one after the other from one address
        PASSWORDS[f"u{n}@example.com"] = "pw"
        assert await status_of(pool, f"u{n}@example.com", "pw") == 200
    assert len(server.logins) == 10


async def test_a_verified_password_is_served_while_its_jid_and_address_are_locked(server):
    pool = make_pool()
    assert await status_of(pool, "admin@example.com", "adminpass", "192.0.2.9") == 200
    for n in range(3):
        assert await status_of(pool, "admin@example.com", f"wrong-{n}", "198.51.100.1") == 401
    assert await status_of(pool, "admin@example.com", "wrong-3", "198.51.100.1") == 429
    logins = len(server.logins)
    # The owner, from another address and from the attacker's, with the cached password: no lock-out.
    assert await status_of(pool, "admin@example.com", "adminpass", "192.0.2.9") == 200
    assert await status_of(pool, "admin@example.com", "adminpass", "198.51.100.1") == 200
    assert len(server.logins) == logins  # served from the cache
    # A password that was never verified is still limited.
    assert await status_of(pool, "admin@example.com", "adminpass2", "192.0.2.9") == 429


async def test_a_credential_goes_when_the_server_ends_its_session(server):
    pool = make_pool()
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    session = pool._sessions["alice@example.com"]
    PASSWORDS["alice@example.com"] = "newpass"
    try:
        session.connection_lost(None)  # the server closed the stream (e.g. "Password changed")
        assert "alice@example.com" not in pool._sessions
        assert await status_of(pool, "alice@example.com", "alicepass") == 401
        assert await status_of(pool, "alice@example.com", "newpass") == 200
    finally:
        PASSWORDS["alice@example.com"] = "alicepass"


async def test_a_cache_hit_whose_pooled_session_is_dead_logs_in_again(server):
    pool = make_pool()
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    pool._sessions["alice@example.com"]._alive = False  # dead, and the pool not told yet
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    assert server.logins == ["alice@example.com"] * 2


async def test_forget_drops_the_credential_and_the_session(server):
    pool = make_pool()
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    session = pool._sessions["alice@example.com"]
    pool.forget("alice@example.com")
    assert "alice@example.com" not in pool._sessions and not session.alive
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    assert server.logins == ["alice@example.com"] * 2  # a real login again


async def test_a_login_under_way_when_the_password_changes_leaves_nothing_cached(server, monkeypatch):
    pool = make_pool()
    server.gate = asyncio.Event()
    racing = asyncio.ensure_future(status_of(pool, "alice@example.com", "alicepass"))
    await asyncio.sleep(0.05)
    assert server.logins == ["alice@example.com"]  # in flight with the old password
    # change-user-password through the API: the server takes the new one, the pool forgets alice
    monkeypatch.setitem(PASSWORDS, "alice@example.com", "newpass")
    pool.forget("alice@example.com")
    server.gate.set()
    assert await racing == 200  # it raced the change and is answered ...
    assert "alice@example.com" not in pool._sessions  # ... but its session is not pooled
    assert await status_of(pool, "alice@example.com", "alicepass") == 401  # nor its password cached
    assert await status_of(pool, "alice@example.com", "newpass") == 200
    assert server.logins == ["alice@example.com"] * 3


async def test_sessions_the_pool_closes_itself_keep_their_credential(server):
    pool = make_pool(max_sessions=1)
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    alice = pool._sessions["alice@example.com"]
    assert await status_of(pool, "admin@example.com", "adminpass") == 200  # evicts alice's session
    alice.connection_lost(None)
    assert await status_of(pool, "alice@example.com", "alicepass") == 200
    assert server.logins == ["alice@example.com", "admin@example.com"]  # no new login for alice


# --- which commands drop a credential (scripts/rest/adhoc/adhoc.py) ---------------------------


@pytest.mark.parametrize("name, fields, expected", [
    ("change-user-password", [{"var": "accountjid", "value": "Alice@Example.com"},
                              {"var": "password", "value": "x"}], ["alice@example.com"]),
    ("delete-user", [{"var": "accountjids", "value": ["a@example.com", "b@example.com/res"]}],
     ["a@example.com", "b@example.com"]),
    ("end-user-session", [{"var": "accountjids", "value": "a@example.com"}], ["a@example.com"]),
    ("disable-user", [{"var": "accountjids", "value": ["a@example.com", "not a jid@@"]}], ["a@example.com"]),
    ("add-user", [{"var": "accountjid", "value": "a@example.com"}], []),
    ("change-user-password", [], []),  # only the form was asked for
])
def test_accounts_changed_by_account_changing_commands(name, fields, expected):
    from tigase_rest.xmpp.forms import accounts_changed_by, parse_command_request

    request = parse_command_request({"command": {"node": "http://jabber.org/protocol/admin#" + name,
                                                 "fields": fields}})
    assert accounts_changed_by(request) == expected
