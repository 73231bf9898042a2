"""No request can take the XMPP link down (issue 11, "High"), against the real Prosody.

Prosody closes the whole component stream on a stanza over its limit, failing every request in
flight. So every stanza the component writes is bounded by xmpp.max_stanza_bytes (413, nothing
sent), avatar images and status fields have their own bounds, and a stored status that cannot be
sent is skipped on load. Each attack runs with pings alongside: none may answer 503, and the link
must never reconnect.
"""

from __future__ import annotations

import asyncio
import sqlite3

from rest import call

XML = {"Content-Type": "application/xml"}
PING = "<iq xmlns='jabber:client' type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
PNG = b"\x89PNG\r\n\x1a\n"


async def health(component) -> dict:
    return (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]


async def with_pings_alongside(component, attack):
    """Run ``attack()`` while pinging the server through the link; (attack's result, ping statuses)."""
    statuses: list[int] = []
    done = asyncio.Event()

    async def ping() -> None:
        while not done.is_set():
            statuses.append((await call(component, "POST", "/rest/stream/", body=PING, headers=XML)).status)
            await asyncio.sleep(0.02)

    pinger = asyncio.ensure_future(ping())
    try:
        result = await attack()
        await asyncio.sleep(1.0)  # a link the server closed would show within this (Prosody answers at once)
    finally:
        done.set()
        await pinger
    return result, statuses


async def test_oversized_avatar_status_and_stanza_are_refused_and_the_link_stays_up(component, xmpp_client):
    bob = await xmpp_client("bob")
    before = await health(component)

    async def attacks():
        avatar = await call(component, "PUT", "/rest/avatar/bob@localhost", body=PNG + b"\0" * 400_000,
                            headers={"Content-Type": "image/png"})
        status = await call(component, "POST", "/rest/user/alice@localhost/status/big",
                            body={"show": "xa", "status": "x" * 600_000})
        message = ("<message xmlns='jabber:client' type='chat' to='bob@localhost/test'><body>"
                   + "y" * 300_000 + "</body></message>")
        stream = await call(component, "POST", "/rest/stream/", body=message, headers=XML)
        return avatar, status, stream

    (avatar, status, stream), pings = await with_pings_alongside(component, attacks)
    assert avatar.status == 413 and "fit in one vCard stanza" in avatar.text, avatar.text
    assert status.status == 400 and "at most 1024" in status.text, status.text
    assert stream.status == 413 and "xmpp.max_stanza_bytes" in stream.text, stream.text
    assert len(pings) > 10 and set(pings) == {200}, pings
    after = await health(component)
    assert (after["xmpp_link"], after["link_connects"]) == ("up", before["link_connects"]), component.log_text()[-3000:]
    assert "not-well-formed" not in component.log_text() and "XMPP link lost" not in component.log_text()
    # nothing half-sent reached bob; a normal message right after still does
    small = "<message xmlns='jabber:client' type='chat' to='bob@localhost/test'><body>still here</body></message>"
    assert (await call(component, "POST", "/rest/stream/", body=small, headers=XML)).status == 200
    message = await asyncio.wait_for(bob.messages.get(), 5)
    assert message["body"] == "still here"


async def test_a_stored_status_that_cannot_be_sent_is_skipped_and_can_be_withdrawn(component_factory, tmp_path):
    # A row as an older version stored it: 600 KB of status text, re-sent on every connect until now.
    db = sqlite3.connect(tmp_path / "statuses.sqlite3")
    db.execute("CREATE TABLE statuses (user TEXT NOT NULL, resource TEXT NOT NULL, priority INTEGER NOT NULL, "
               "show TEXT, status TEXT, activity TEXT, PRIMARY KEY (user, resource))")
    db.execute("INSERT INTO statuses VALUES ('alice@localhost', 'big', -1, 'xa', ?, NULL)", ("x" * 600_000,))
    db.commit()
    db.close()

    component = component_factory(storage={"data_dir": str(tmp_path)})
    _, pings = await with_pings_alongside(component, lambda: asyncio.sleep(2.5))  # past the re-announce
    assert set(pings) == {200}, pings
    state = await health(component)
    assert (state["xmpp_link"], state["link_connects"]) == ("up", 1), component.log_text()[-3000:]
    assert "Stored status of alice@localhost/big skipped" in component.log_text()

    withdrawn = await call(component, "POST", "/rest/user/alice@localhost/status/big", body={"available": False})
    assert withdrawn.status == 200 and withdrawn.json()["status"]["available"] == "false"
    db = sqlite3.connect(tmp_path / "statuses.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM statuses").fetchone() == (0,)
    db.close()


async def test_statuses_only_for_existing_users_and_bounded_per_user(component_factory):
    component = component_factory(presence={"max_statuses_per_user": 3})
    nobody = await call(component, "POST", "/rest/user/nobody@localhost/status", body={"show": "xa"})
    assert nobody.status == 404 and "nobody@localhost has no account" in nobody.text, nobody.text
    for resource in ("a", "b", "c"):
        answer = await call(component, "POST", f"/rest/user/alice@localhost/status/{resource}", body={"show": "xa"})
        assert answer.status == 200, answer.text
    fourth = await call(component, "POST", "/rest/user/alice@localhost/status/d", body={"show": "xa"})
    assert fourth.status == 409 and "max_statuses_per_user" in fourth.text
    assert (await call(component, "POST", "/rest/user/alice@localhost/status/a", body={"available": False})).status == 200
    assert (await call(component, "POST", "/rest/user/alice@localhost/status/d", body={"show": "xa"})).status == 200
