"""Soak run: minutes of mixed traffic against a real component and Prosody, watching for leaks.

    SOAK_SECONDS=180 .venv/bin/python -m bench.soak      (make soak)

Starts its own Prosody (tools.prosody, as the tests do) and the component
(``python -m tigase_rest``, log level info), logs bob in, then for SOAK_SECONDS sends SOAK_RATE
requests per second from SOAK_CONCURRENCY keep-alive connections, a mix of:
  60% /rest/stream messages to bob (every one answered 200 must reach bob),
  25% /rest/stream IQ round trips (ping to the server; the reply must carry the request's id),
  15% /rest/adhoc (alice and admin listing commands over their pooled c2s sessions).
Every 5 s it samples the component's RSS (/proc/<pid>/status VmRSS), open fds (/proc/<pid>/fd),
CPU time and /rest/health, and prints a row; at the end the slopes after warm-up.

Exit status 0 only when all of these hold (1 otherwise, 2 when the run could not start):
- no request failed (every answer 200, none lost, every message delivered to bob);
- fds do not grow: after warm-up the slope is under 0.5 fd/min and the last sample is at most
  2 above the first sample after warm-up;
- RSS stays bounded: it grows by at most SOAK_RSS_GROWTH_MIB (default 16) from the end of
  warm-up to the end of the run;
- at the end nothing is pending (pending_iqs and caller_pending_iqs are 0).
Warm-up: the first min(30 s, 20% of the run), at least one sample interval. Everything it started
is stopped on exit, also on Ctrl-C or failure; SOAK_KEEP=1 keeps the work dir (logs) for a look.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tools.prosody import ProsodyServer, free_port, http_status, login, logout, plain_client, write_toml

REPO = Path(__file__).resolve().parents[1]
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
API_KEY = "soak-key"
SAMPLE_EVERY = 5.0


def env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"soak: {name} must be a number, not {os.environ[name]!r}")


SECONDS = env_number("SOAK_SECONDS", 180)
RATE = env_number("SOAK_RATE", 400)
CONCURRENCY = int(env_number("SOAK_CONCURRENCY", 20))
RSS_GROWTH_MIB = env_number("SOAK_RSS_GROWTH_MIB", 16)
FD_SLOPE_PER_MIN = 0.5
WARMUP = max(SAMPLE_EVERY, min(30.0, 0.2 * SECONDS))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    answered_messages: set[str] = field(default_factory=set)

    def fail(self, what: str) -> None:
        if len(self.failures) < 1000:
            self.failures.append(what)


class Component:
    def __init__(self, workdir: Path, prosody: ProsodyServer):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "component.log"
        config = workdir / "component.toml"
        write_toml(config, {
            "xmpp": {**prosody.component_config(), "iq_timeout": 10},
            "http": {"host": "127.0.0.1", "port": self.port, "scripts_dir": str(REPO / "scripts" / "rest")},
            "auth": {"api_keys": [API_KEY], "admins": ["admin@localhost"]},
            "log": {"level": "info"},
        })
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIGASE_REST_")}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tigase_rest", "--config", str(config)], cwd=REPO,
                                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while http_status(f"{self.url}/rest/health?api-key={API_KEY}") != 200:  # 200: HTTP and the XMPP link up
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()  # the caller never gets this object: stop it here
                raise RuntimeError(f"component did not come up; log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                print("soak: the component did not stop within 20 s of SIGTERM; killed", file=sys.stderr)
                return None
        return self.process.returncode


async def run(component: Component, prosody: ProsodyServer) -> bool:
    pid = component.process.pid
    bob = plain_client("bob@localhost/soak", USERS["bob"])
    received: set[str] = set()
    bob.register_handler(Callback("soak", MatchXPath("{jabber:client}message"),
                                  lambda m: received.add(m["body"]) if (m["body"] or "").startswith("soak-") else None))
    await login(bob, "127.0.0.1", prosody.c2s_port)
    bob.send_presence()

    tally = Tally()
    auth = {name: {"Authorization": aiohttp.encode_basic_auth(f"{name}@localhost", USERS[name])}
            for name in ("admin", "alice")}
    stream_headers = {"Api-Key": API_KEY, "Content-Type": "application/xml", **auth["admin"]}
    permits: asyncio.Queue[None] = asyncio.Queue(maxsize=CONCURRENCY * 4)
    counter = iter(range(10 ** 12))

    async def one(http: aiohttp.ClientSession) -> None:
        n = next(counter)
        kind = random.random()
        tally.sent += 1
        try:
            if kind < 0.60:
                body = f"soak-{n}"
                stanza = f'<message to="bob@localhost/soak" type="chat"><body>{body}</body></message>'
                async with http.post(f"{component.url}/rest/stream/", headers=stream_headers, data=stanza) as r:
                    await r.read()
                    if r.status == 200:
                        tally.answered_messages.add(body)
                        tally.ok += 1
                    else:
                        tally.fail(f"message {r.status}")
            elif kind < 0.85:
                stanza = f'<iq type="get" to="localhost" id="soak-{n}"><ping xmlns="urn:xmpp:ping"/></iq>'
                async with http.post(f"{component.url}/rest/stream/", headers=stream_headers, data=stanza) as r:
                    text = await r.text()
                    if r.status == 200 and f'id="soak-{n}"' in text and 'type="result"' in text:
                        tally.ok += 1
                    else:
                        tally.fail(f"iq {r.status} {text[:100]}")
            else:
                who = "alice" if kind < 0.93 else "admin"
                async with http.get(f"{component.url}/rest/adhoc/localhost",
                                    headers={"Api-Key": API_KEY, **auth[who]}) as r:
                    await r.read()
                    if r.status == 200:
                        tally.ok += 1
                    else:
                        tally.fail(f"adhoc {who} {r.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            tally.fail(f"{type(e).__name__}: {e}")

    async def worker(http: aiohttp.ClientSession) -> None:
        while True:
            await permits.get()
            await one(http)

    async def ticker(until: float) -> None:
        interval, due = 0.01, time.monotonic()
        carry = 0.0
        while time.monotonic() < until:
            carry += RATE * interval
            while carry >= 1:
                carry -= 1
                if not permits.full():  # behind: the achieved rate shows it
                    permits.put_nowait(None)
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def health(http) -> dict:
        async with http.get(f"{component.url}/rest/health?type=application/json", headers={"Api-Key": API_KEY}) as r:
            return (await r.json())["health"]

    samples: list[dict] = []
    print(f"soak: {SECONDS:.0f} s at {RATE:.0f} req/s from {CONCURRENCY} connections; component pid {pid}, "
          f"warm-up {WARMUP:.0f} s")
    print(f"{'t/s':>6} {'requests':>9} {'req/s':>6} {'failed':>6} {'RSS/MiB':>8} {'fds':>4} {'cpu%':>5} "
          f"{'pending':>7} {'sessions':>8}")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY), timeout=timeout) as http, \
            aiohttp.ClientSession(timeout=timeout) as monitor:
        # All CONCURRENCY connections at once, before the first sample: otherwise the client's pool
        # opens them one by one as bursts need them, and the component's fd count grows with it.
        await asyncio.gather(*(one(http) for _ in range(CONCURRENCY)))
        started = time.monotonic()
        until = started + SECONDS
        workers = [asyncio.create_task(worker(http)) for _ in range(CONCURRENCY)]
        tick = asyncio.create_task(ticker(until))
        last_sent, last_t, last_cpu = 0, started, cpu_seconds(pid)
        while True:
            now = time.monotonic()
            report = await health(monitor)
            cpu = cpu_seconds(pid)
            sample = {"t": now - started, "sent": tally.sent, "failed": len(tally.failures), "rss": rss_kib(pid),
                      "fds": open_fds(pid), "pending": report["pending_iqs"] + report["caller_pending_iqs"],
                      "sessions": report["caller_sessions"],
                      "rate": (tally.sent - last_sent) / max(1e-9, now - last_t),
                      "cpu": 100 * (cpu - last_cpu) / max(1e-9, now - last_t)}
            samples.append(sample)
            first = len(samples) == 1  # the baseline: no interval yet
            print(f"{sample['t']:6.0f} {sample['sent']:9d} {'-' if first else round(sample['rate']):>6} "
                  f"{sample['failed']:6d} {sample['rss'] / 1024:8.1f} {sample['fds']:4d} "
                  f"{'-' if first else round(sample['cpu']):>5} {sample['pending']:7d} {sample['sessions']:8d}",
                  flush=True)
            last_sent, last_t, last_cpu = tally.sent, now, cpu
            if now >= until:
                break
            await asyncio.sleep(max(0.0, min(SAMPLE_EVERY, until - now) - (time.monotonic() - now)))
        await tick
        while not permits.empty():  # the queued permits are dropped: the run is over
            permits.get_nowait()
        await asyncio.sleep(0.5)
        deadline = time.monotonic() + 15  # let the requests in flight finish
        while tally.sent > tally.ok + len(tally.failures) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        final = await health(monitor)

    deadline = time.monotonic() + 10
    while not tally.answered_messages <= received and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await logout(bob)

    elapsed = samples[-1]["t"]
    steady = [s for s in samples if s["t"] >= WARMUP] or samples[-2:]
    rss_slope = slope_per_minute([(s["t"], s["rss"]) for s in steady])
    fd_slope = slope_per_minute([(s["t"], s["fds"]) for s in steady])
    rss_growth = (samples[-1]["rss"] - steady[0]["rss"]) / 1024
    fd_growth = samples[-1]["fds"] - steady[0]["fds"]
    lost = tally.answered_messages - received
    in_flight = tally.sent - tally.ok - len(tally.failures)

    print(f"\n{tally.sent} requests in {elapsed:.0f} s ({tally.sent / max(elapsed, 1e-9):.0f} req/s), "
          f"{tally.ok} ok, {len(tally.failures)} failed, {in_flight} unanswered; "
          f"{len(tally.answered_messages)} messages answered 200, {len(lost)} of them not at bob")
    print(f"RSS {samples[0]['rss'] / 1024:.1f} -> {steady[0]['rss'] / 1024:.1f} (after warm-up) -> "
          f"{samples[-1]['rss'] / 1024:.1f} MiB: {rss_growth:+.1f} MiB after warm-up "
          f"(bound {RSS_GROWTH_MIB:g}), slope {rss_slope:+.0f} KiB/min")
    print(f"fds {samples[0]['fds']} -> {samples[-1]['fds']}: slope {fd_slope:+.2f}/min (bound {FD_SLOPE_PER_MIN}), "
          f"{fd_growth:+d} since warm-up (bound +2)")
    print(f"at the end: pending_iqs {final['pending_iqs']}, caller_pending_iqs {final['caller_pending_iqs']}, "
          f"caller_sessions {final['caller_sessions']}, caller_logins {final['caller_logins']}")

    problems = []
    if tally.failures:
        counts: dict[str, int] = {}
        for f in tally.failures:
            counts[f[:80]] = counts.get(f[:80], 0) + 1
        top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])
        problems.append(f"{len(tally.failures)} requests failed: {top}")
    if in_flight:
        problems.append(f"{in_flight} requests never answered")
    if lost:
        problems.append(f"{len(lost)} messages answered 200 never reached bob, e.g. {sorted(lost)[:3]}")
    if fd_slope > FD_SLOPE_PER_MIN or fd_growth > 2:
        problems.append(f"open fds grow ({fd_slope:+.2f}/min, {fd_growth:+d})")
    if rss_growth > RSS_GROWTH_MIB:
        problems.append(f"RSS grew {rss_growth:.1f} MiB after warm-up (bound {RSS_GROWTH_MIB:g})")
    if final["pending_iqs"] or final["caller_pending_iqs"]:
        problems.append("IQs still pending at the end")
    if final["caller_logins"] > 2:
        print(f"note: {final['caller_logins']} c2s logins for 2 callers (a session was replaced or re-created)")
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print("PASS")
    return not problems


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tigase-rest-soak-"))
    prosody = component = None
    status = 1
    try:
        prosody = ProsodyServer(workdir / "prosody")
        for user, password in USERS.items():
            prosody.register(user, password)
        prosody.start()
        component = Component(workdir, prosody)
        status = 0 if asyncio.run(run(component, prosody)) else 1
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - report, clean up, exit non-zero
        print(f"soak: {type(e).__name__}: {e}", file=sys.stderr)
        status = 2 if component is None else 1
    finally:
        if component is not None:
            code = component.stop()
            if code != 0:
                print(f"soak: the component exited with {code} on SIGTERM", file=sys.stderr)
                status = status or 1
        if prosody is not None:
            prosody.stop()
        if os.environ.get("SOAK_KEEP"):
            print(f"soak: work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
