"""Faults against a real component and Prosody: the server killed under load, an entity that never
answers (thousands of times at once), the caller's own session killed by the server, HTTP clients
that vanish, SIGTERM and SIGHUP under load. Every request ends, within a bound; nothing leaks.

Figures (RSS, counts, timings) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time

import aiohttp
import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from rest import ADMIN, ALICE, KEY, call

ADMIN_NS = "http://jabber.org/protocol/admin#"
SILENT_NS = "urn:example:silent"
STREAM_HEADERS = {**KEY, **ADMIN, "Content-Type": "application/xml"}
# Beyond the configured IQ timeout, what a request may take to come back (a loaded 2-core machine).
MARGIN = 3.0


async def health(component) -> tuple[int, dict]:
    answer = await call(component, "GET", "/rest/health?type=application/json")
    return answer.status, answer.json()["health"]


async def wait_health(component, predicate, timeout: float, what: str) -> dict:
    """Poll /rest/health until ``predicate(status, report)``; fail with the last report after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, report = await health(component)
        except aiohttp.ClientError as e:
            status, report = 0, {"error": str(e)}
        if predicate(status, report):
            return report
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout} s; last health {status} {report}")
        await asyncio.sleep(0.1)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def silent_bob(xmpp_client, resource: str):
    """Bob online, taking every IQ in SILENT_NS and never answering it."""
    bob = await xmpp_client("bob", resource=resource)
    bob.xmpp.register_handler(Callback("swallow", MatchXPath(f"{{jabber:client}}iq/{{{SILENT_NS}}}q"), lambda _: None))
    return bob


def silent_iq(resource: str, n: int) -> str:
    return f'<iq type="get" to="bob@localhost/{resource}" id="q{n}"><q xmlns="{SILENT_NS}"/></iq>'


async def timed_post(http: aiohttp.ClientSession, url: str, body: str,
                     headers=STREAM_HEADERS) -> tuple[int, float, str]:
    """(status, seconds, body); status 0 with the exception name when no answer came."""
    started = time.monotonic()
    try:
        async with http.post(url, data=body, headers=headers) as response:
            text = await response.text()
            return response.status, time.monotonic() - started, text
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return 0, time.monotonic() - started, type(e).__name__


async def raw_post(port: int, body: str, timeout: float) -> tuple[int, float, str]:
    """A minimal HTTP/1.1 POST over a fresh connection (far cheaper than a client library when the
    test must hold thousands of requests open at once): (status, seconds, body)."""
    started = time.monotonic()
    data = body.encode()
    head = (f"POST /rest/stream/ HTTP/1.1\r\nHost: 127.0.0.1\r\nApi-Key: {KEY['Api-Key']}\r\n"
            f"Authorization: {ADMIN['Authorization']}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + data)
        response = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return 0, time.monotonic() - started, type(e).__name__
    finally:
        if writer is not None:
            writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), time.monotonic() - started, rest.partition(b"\r\n\r\n")[2].decode()


# --- the server dies under load ----------------------------------------------------------------


async def test_prosody_killed_under_load_every_request_ends_and_the_link_recovers(
        prosody, component_factory, xmpp_client):
    iq_timeout = 3
    # reconnect_max_delay: keep the backoff short so the test is quick; the path is the default one.
    component = component_factory(xmpp={"iq_timeout": iq_timeout, "reconnect_max_delay": 2}, log={"level": "info"})
    await silent_bob(xmpp_client, "silent")
    url = component.url + "/rest/stream/"
    _, before = await health(component)
    assert (await call(component, "GET", "/rest/adhoc/localhost")).status == 200  # the admin's pooled session
    killed_at = None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=iq_timeout + 20)) as http:
            iqs = [asyncio.create_task(timed_post(http, url, silent_iq("silent", n))) for n in range(200)]
            stop_messages = asyncio.Event()

            async def post_messages(worker: int) -> list[tuple[int, float, str]]:
                results = []
                for n in itertools.count():
                    if stop_messages.is_set():
                        return results
                    results.append(await timed_post(
                        http, url, f'<message to="bob@localhost/silent"><body>{worker}-{n}</body></message>'))

            messages = [asyncio.create_task(post_messages(w)) for w in range(10)]
            await wait_health(component, lambda s, r: r["pending_iqs"] == 200, 10, "200 IQs pending")
            prosody.kill()
            killed_at = time.monotonic()
            await asyncio.sleep(0.5)  # messages keep coming while the server is gone
            stop_messages.set()
            iq_results = await asyncio.wait_for(asyncio.gather(*iqs), iq_timeout + 20)
            message_results = [r for rs in await asyncio.wait_for(asyncio.gather(*messages), 20) for r in rs]
            ended = time.monotonic()
    finally:
        prosody.start()

    statuses = {}
    for status, _, _ in iq_results + message_results:
        statuses[status] = statuses.get(status, 0) + 1
    print(f"\nProsody killed under load: {len(iq_results)} IQs + {len(message_results)} messages, statuses {statuses}, "
          f"last answer {ended - killed_at:.2f} s after the kill")
    assert set(statuses) <= {200, 503, 504}, statuses
    assert all(status in (503, 504) for status, _, _ in iq_results), "an IQ to a silent client got another answer"
    slowest = max(seconds for _, seconds, _ in iq_results + message_results)
    assert slowest < iq_timeout + MARGIN, f"a request took {slowest:.1f} s"
    assert any(status == 503 for status, _, _ in message_results), "no message was refused while the server was down"

    # The component reconnects by itself; nothing stays pending.
    after = await wait_health(component, lambda s, r: s == 200 and r["link_connects"] > before["link_connects"],
                              30, "the component reconnected")
    assert (after["pending_iqs"], after["caller_pending_iqs"]) == (0, 0), after
    # ...and serves both identities again: the component link, and a new session for the caller.
    bob = await xmpp_client("bob", resource="back")
    answer = await call(component, "POST", "/rest/stream/", headers={"Content-Type": "application/xml"},
                        body='<message to="bob@localhost/back"><body>back</body></message>')
    assert answer.status == 200, answer.text
    assert (await bob.next_message())["body"] == "back"
    answer = await call(component, "GET", "/rest/adhoc/localhost")
    assert answer.status == 200, answer.text
    assert component.process.poll() is None


# --- an entity that never answers --------------------------------------------------------------


async def test_thousands_of_requests_to_an_entity_that_never_answers(component_factory, xmpp_client):
    iq_timeout, count = 6, 3000
    component = component_factory(xmpp={"iq_timeout": iq_timeout}, log={"level": "info"})
    await silent_bob(xmpp_client, "silent")
    pid = component.process.pid
    url = component.url + "/rest/stream/"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=iq_timeout + 30)) as http:
        # warm up: the admin's login, and every code path once
        assert (await timed_post(http, url, '<message to="bob@localhost/silent"><body>warm</body></message>'))[0] == 200
        rss_before = rss_kib(pid)
        peak = {"rss": rss_before, "pending": 0, "at": 0.0}
        done = asyncio.Event()

        async def sample():
            while not done.is_set():
                peak["rss"] = max(peak["rss"], rss_kib(pid))
                _, report = await health(component)
                if report["pending_iqs"] > peak["pending"]:
                    peak["pending"], peak["at"] = report["pending_iqs"], time.monotonic() - started
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        port = int(component.url.rsplit(":", 1)[1])
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(
            *(raw_post(port, silent_iq("silent", n), iq_timeout + 60) for n in range(count))), iq_timeout + 60)
        elapsed = time.monotonic() - started
        done.set()
        await sampler
    _, report = await health(component)
    rss_after = rss_kib(pid)
    statuses = {}
    for status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    times = sorted(seconds for _, seconds, _ in results)
    print(f"\n{count} IQs to a silent entity, iq_timeout {iq_timeout} s: statuses {statuses}, "
          f"{times[0]:.2f}-{times[-1]:.2f} s each (client side, queueing included), all done in {elapsed:.1f} s; "
          f"peak pending {peak['pending']} {peak['at']:.1f} s after the start; "
          f"RSS {rss_before / 1024:.1f} MiB before, {peak['rss'] / 1024:.1f} MiB peak "
          f"(+{(peak['rss'] - rss_before) / count:.1f} KiB per pending request), {rss_after / 1024:.1f} MiB after")
    assert statuses == {504: count}, statuses
    assert all("remote-server-timeout" in text for _, _, text in results)
    assert peak["pending"] >= count * 0.9, f"only {peak['pending']} of {count} were ever pending at once"
    # None early; none later than its timeout after the moment (nearly) all were waiting.
    assert iq_timeout - 0.1 <= times[0], times[0]
    assert times[-1] < peak["at"] + iq_timeout + MARGIN, (times[-1], peak["at"])
    # Bounded: well under 64 KiB per waiting request (measured: see the printed figure).
    assert peak["rss"] - rss_before < 64 * count, f"RSS grew by {(peak['rss'] - rss_before) / 1024:.0f} MiB"
    assert report["pending_iqs"] == 0, report


# --- the caller's own session is killed by the server ------------------------------------------


async def test_callers_session_ended_by_the_server_is_replaced_transparently(component):
    assert (await call(component, "GET", "/rest/adhoc/localhost", auth=ALICE)).status == 200
    assert (await call(component, "GET", "/rest/adhoc/localhost")).status == 200
    for round_ in range(3):
        _, before = await health(component)
        assert before["caller_sessions"] == 2, before  # admin's and alice's
        answer = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
            "node": ADMIN_NS + "end-user-session", "fields": [{"var": "accountjids", "value": ["alice@localhost"]}]}})
        assert answer.status == 200 and "alice@localhost" in answer.text, answer.text
        # at once, as a client would: the dead session must not show
        answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ALICE)
        assert answer.status == 200, f"round {round_}: {answer.status} {answer.text}"
        assert [item["node"] for item in answer.json()["items"]] == ["uptime"]
        _, after = await health(component)
        assert after["caller_logins"] == before["caller_logins"] + 1, (before, after)
        assert after["caller_pending_iqs"] == 0


# --- HTTP clients that go away -----------------------------------------------------------------


async def test_http_clients_disconnecting_mid_request_leave_nothing_behind(component_factory, xmpp_client):
    iq_timeout = 3
    component = component_factory(xmpp={"iq_timeout": iq_timeout})
    await silent_bob(xmpp_client, "silent")
    url = component.url + "/rest/stream/"
    assert (await call(component, "GET", "/rest/adhoc/localhost")).status == 200  # log the admin in
    # 50 requests waiting for an IQ reply, then every client gone
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    requests = [asyncio.create_task(timed_post(http, url, silent_iq("silent", n))) for n in range(50)]
    await wait_health(component, lambda s, r: r["pending_iqs"] == 50, 10, "50 IQs pending")
    for request in requests:
        request.cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    await http.close()
    gone = time.monotonic()

    # A client gone mid-upload: headers promise 1000 bytes, 100 come, then the connection closes.
    port = int(component.url.rsplit(":", 1)[1])
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(("POST /rest/stream/ HTTP/1.1\r\nHost: x\r\nApi-Key: test-key\r\n"
                      f"Authorization: {ADMIN['Authorization']}\r\nContent-Type: application/xml\r\n"
                      "Content-Length: 1000\r\n\r\n").encode() + b"<message to='bob@localhost/silent'>" + b" " * 65)
        await writer.drain()
        writer.close()
    # ... and one that closes before its headers are complete
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /rest/stream/ HTTP/1.1\r\nHost: x\r\nContent-Le")
    await writer.drain()
    writer.close()

    report = await wait_health(component, lambda s, r: s == 200 and r["pending_iqs"] == 0, iq_timeout + MARGIN,
                               "pending IQs of vanished clients released")
    print(f"\n50 vanished clients: pending back to 0 {time.monotonic() - gone:.1f} s after they left "
          f"(iq_timeout {iq_timeout} s)")
    assert report["xmpp_link"] == "up"
    answer = await call(component, "POST", "/rest/stream/", headers={"Content-Type": "application/xml"},
                        body='<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>')
    assert answer.status == 200 and 'type="result"' in answer.text
    log = component.log_text()
    # A client that leaves is no handler failure: no ERROR, no traceback.
    assert "Handler failed" not in log and "Traceback" not in log, log[log.find("Traceback") - 300:][:2500]
    assert component.process.poll() is None


# --- signals under load ------------------------------------------------------------------------


class Counter:
    """Bodies of the messages bob received."""

    def __init__(self, bob, prefix: str):
        self.bodies: set[str] = set()
        self.changed = asyncio.Event()

        def on_message(msg) -> None:
            if (msg["body"] or "").startswith(prefix):
                self.bodies.add(msg["body"])
                self.changed.set()

        bob.xmpp.register_handler(Callback(f"count {prefix}", MatchXPath("{jabber:client}message"), on_message))

    async def settle(self, expected: set[str], timeout: float = 10, quiet: float = 0.5) -> set[str]:
        """Wait until ``expected`` all arrived (or ``timeout``), then ``quiet`` s more for extras."""
        deadline = time.monotonic() + timeout
        while not expected <= self.bodies and time.monotonic() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        await asyncio.sleep(quiet)
        return set(self.bodies)


async def test_sigterm_under_load_answers_or_refuses_every_request_and_exits_0(component_factory, xmpp_client):
    component = component_factory(log={"level": "info"})
    bob = await xmpp_client("bob", resource="term")
    counter = Counter(bob, "term-")
    url = component.url + "/rest/stream/"
    # body -> "200" (or another status) | "no answer: X" (refused, reset or closed before any byte of an
    # answer: the client knows it was not served) | "cut: X" (an answer broken off: never acceptable)
    outcomes: dict[str, str] = {}

    async def worker(http, w: int) -> None:
        for n in itertools.count():
            body = f"term-{w}-{n}"
            try:
                response = await http.post(url, headers=STREAM_HEADERS,
                                           data=f'<message to="bob@localhost/term"><body>{body}</body></message>')
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                    aiohttp.ClientOSError, asyncio.TimeoutError) as e:
                outcomes[body] = f"no answer: {type(e).__name__}"
                if isinstance(e, aiohttp.ClientConnectorError):
                    return  # refused: the listener is closed
                continue
            try:
                await response.read()
                outcomes[body] = str(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                outcomes[body] = f"cut: {type(e).__name__}"
            finally:
                response.release()

    # force_close: one connection per request, so "refused" and "answered" are unambiguous
    # (a keep-alive connection closed by the server while a request is on its way is not).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        assert (await timed_post(http, url, '<message to="bob@localhost/term"><body>warm</body></message>'))[0] == 200
        workers = [asyncio.create_task(worker(http, w)) for w in range(20)]
        await asyncio.sleep(1.5)
        signalled = time.monotonic()
        component.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*workers), 30)
    code = await asyncio.to_thread(component.process.wait, 15)
    stopped = time.monotonic() - signalled

    answered = {body for body, outcome in outcomes.items() if outcome == "200"}
    tally: dict[str, int] = {}
    for outcome in outcomes.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    received = await counter.settle(answered)
    print(f"\nSIGTERM under load: {len(outcomes)} requests {tally}; exit {code} {stopped:.2f} s after the signal; "
          f"bob received {len(received)}")
    assert code == 0, component.log_text()[-3000:]
    assert not [o for o in outcomes.values() if o.startswith("cut")], tally
    assert set(tally) <= {"200", "503", "no answer: ClientConnectorError", "no answer: ServerDisconnectedError",
                          "no answer: ClientOSError"}, tally
    assert len(answered) > 50, tally
    assert received == answered, (f"answered 200 but not received: {sorted(answered - received)[:10]}; "
                                  f"received without a 200: {sorted(received - answered)[:10]}")
    log = component.log_text()
    assert "Shutting down" in log and "Stopped" in log and "Traceback" not in log, log[-3000:]


async def test_sighup_under_load_fails_no_request_and_reloads(component_factory, xmpp_client):
    component = component_factory(log={"level": "info"})
    bob = await xmpp_client("bob", resource="hup")
    counter = Counter(bob, "hup-")
    url = component.url + "/rest/stream/"
    results: list[tuple[str, int, str]] = []
    stop = asyncio.Event()

    async def post_messages(http, w: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            body = f"hup-{w}-{n}"
            status, _, text = await timed_post(
                http, url, f'<message to="bob@localhost/hup"><body>{body}</body></message>')
            results.append((body, status, text))

    async def run_commands(http) -> None:
        while not stop.is_set():
            async with http.get(component.url + "/rest/adhoc/localhost", headers={**KEY, **ALICE}) as response:
                results.append(("adhoc", response.status, await response.text()))

    loads_before = component.log_text().count("Loaded ")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        assert (await call(component, "GET", "/rest/adhoc/localhost", auth=ALICE)).status == 200
        tasks = [asyncio.create_task(post_messages(http, w)) for w in range(10)]
        tasks += [asyncio.create_task(run_commands(http)) for _ in range(3)]
        for _ in range(3):
            await asyncio.sleep(0.5)
            component.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    failed = [(body, status, text[:200]) for body, status, text in results if status != 200]
    reloads = component.log_text().count("Loaded ") - loads_before
    answered = {body for body, status, _ in results if status == 200 and body != "adhoc"}
    received = await counter.settle(answered)
    print(f"\nSIGHUP x3 under load: {len(results)} requests, {len(failed)} failed, {reloads} reloads logged")
    assert not failed, failed[:5]
    assert reloads == 3, component.log_text()[-2000:]
    assert received == answered
    assert component.process.poll() is None


async def test_trickling_heads_are_closed_after_header_timeout_and_over_max_connections_is_503(component_factory):
    component = component_factory(http={"header_timeout": 1, "max_connections": 60})
    port = int(component.url.rsplit(":", 1)[1])
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    started = time.monotonic()
    for _, writer in conns:
        writer.write(b"GET /rest/health HTTP/1.1\r\nHost: loc")  # half a header, then nothing

    async def closed(reader) -> float:
        try:
            while await asyncio.wait_for(reader.read(1024), 5):
                pass
        except ConnectionError:
            pass
        return time.monotonic() - started

    # meanwhile whole requests are served, and past 60 open connections a new one gets 503
    assert (await call(component, "GET", "/rest/health")).status == 200
    extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(15)]
    refused = [await asyncio.wait_for(r.read(), 5) for r, _ in extra[10:]]
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in refused), refused
    waited = await asyncio.gather(*(closed(r) for r, _ in conns))
    print(f"\n50 half-sent heads, header_timeout 1 s: closed after {min(waited):.2f}-{max(waited):.2f} s; "
          f"connections 61-65 answered 503")
    assert all(0.9 <= w < 3 for w in waited), waited
    for _, w in conns + extra:
        w.close()
    answer = await call(component, "GET", "/rest/health")
    assert answer.status == 200 and answer.headers["Server"] == "tigase-rest"
