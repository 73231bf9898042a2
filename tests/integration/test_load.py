"""Load against a real component and Prosody (whose config has ``limits = {}``): 1,000 concurrent
HTTP connections, every answer accounted for at the receiving end. Figures are printed (``-s``)."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rest import ADMIN, ALICE, KEY, call

STREAM_HEADERS = {**KEY, **ADMIN, "Content-Type": "application/xml"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def health(component) -> dict:
    return (await call(component, "GET", "/rest/health?type=application/json")).json()["health"]


class PeakFds:
    """Samples the component's open file descriptors while a load runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._task = pid, 0, None

    async def _run(self):
        while True:
            self.peak = max(self.peak, open_fds(self.pid))
            await asyncio.sleep(0.05)

    def __enter__(self):
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


async def test_1000_concurrent_connections_posting_messages(component_factory, xmpp_client):
    connections, per_connection = 1000, 3
    component = component_factory(log={"level": "info"})
    bob = await xmpp_client("bob", resource="load")
    received: set[str] = set()
    all_in = asyncio.Event()
    expected: set[str] = set()

    def on_message(msg) -> None:
        body = msg["body"] or ""
        if body.startswith("load-"):
            received.add(body)
            if expected and expected <= received:
                all_in.set()

    bob.xmpp.register_handler(Callback("count", MatchXPath("{jabber:client}message"), on_message))
    url = component.url + "/rest/stream/"
    statuses: dict[int, int] = {}
    answered: set[str] = set()

    async def connection(http, c: int) -> None:
        for n in range(per_connection):
            body = f"load-{c}-{n}"
            stanza = f'<message to="bob@localhost/load" type="chat"><body>{body}</body></message>'
            async with http.post(url, headers=STREAM_HEADERS, data=stanza) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    answered.add(body)

    base_fds = open_fds(component.process.pid)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        assert (await call(component, "GET", "/rest/health")).status == 200
        assert (await call(component, "POST", "/rest/stream/", headers={"Content-Type": "application/xml"},
                           body='<message to="bob@localhost/load"><body>warm</body></message>')).status == 200
        with PeakFds(component.process.pid) as fds:
            cpu = cpu_seconds(component.process.pid)
            started = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(connection(http, c) for c in range(connections))), 60)
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(component.process.pid) - cpu
    expected.update(answered)
    if not expected <= received:
        try:
            await asyncio.wait_for(all_in.wait(), 20)
        except asyncio.TimeoutError:
            pass
    delivered = time.monotonic() - started
    await asyncio.sleep(0.3)  # anything extra would show up now
    total = connections * per_connection
    print(f"\n{connections} concurrent connections x {per_connection} messages: {statuses} in {elapsed:.2f} s = "
          f"{total / elapsed:.0f} req/s; all {len(received)} at bob after {delivered:.2f} s; "
          f"component fds {base_fds} -> peak {fds.peak}; component CPU {cpu:.2f} s "
          f"({cpu / total * 1000:.2f} ms per request)")
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.get(200) == total, statuses
    assert received == answered, (len(received), len(answered))
    assert fds.peak - base_fds >= connections * 0.9, f"only {fds.peak - base_fds} connections were open at once"
    report = await health(component)
    assert report["pending_iqs"] == 0, report


async def test_1000_concurrent_iq_round_trips_each_get_their_own_reply(component_factory):
    count = 1000
    component = component_factory(log={"level": "info"})
    url = component.url + "/rest/stream/"

    async def ping(http, n: int) -> tuple[int, str]:
        # ids repeat across requests on purpose: each caller must still get its own reply
        stanza = f'<iq type="get" to="localhost" id="same-{n % 10}-{n}"><ping xmlns="urn:xmpp:ping"/></iq>'
        async with http.post(url, headers=STREAM_HEADERS, data=stanza) as r:
            return r.status, await r.text()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        await ping(http, -1)
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*(ping(http, n) for n in range(count))), 60)
        elapsed = time.monotonic() - started
    print(f"\n{count} concurrent IQ round trips (ping to the server): {elapsed:.2f} s = {count / elapsed:.0f} req/s")
    wrong = [(n, status, text[:200]) for n, (status, text) in enumerate(results)
             if status != 200 or f'id="same-{n % 10}-{n}"' not in text or 'type="result"' not in text]
    assert not wrong, wrong[:5]
    assert (await health(component))["pending_iqs"] == 0


async def test_concurrent_callers_share_one_login_each(component_factory):
    """Requests of two callers arriving over half a second from a cold start, so that some arrive
    while a login is still going on and some just after it: one login per caller, every request 200.
    (alice is no configured admin: her login is followed by the admin-commands check.)"""
    component = component_factory(log={"level": "info"})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async def commands(n: int) -> int:
            await asyncio.sleep(n * 0.0008)
            async with http.get(component.url + "/rest/adhoc/localhost",
                                headers={**KEY, **(ADMIN if n % 5 == 0 else ALICE)}) as r:
                await r.read()
                return r.status

        started = time.monotonic()
        statuses = await asyncio.wait_for(asyncio.gather(*(commands(n) for n in range(600))), 60)
        elapsed = time.monotonic() - started
    report = await health(component)
    tally = {s: statuses.count(s) for s in set(statuses)}
    print(f"\n600 ad-hoc listings by 2 callers over 0.5 s from cold: {tally} in {elapsed:.2f} s; "
          f"{report['caller_logins']} logins")
    assert tally == {200: 600}, tally
    assert report["caller_logins"] == 2, report  # one per caller: later requests reuse it
    assert (report["caller_sessions"], report["caller_pending_iqs"]) == (2, 0), report
