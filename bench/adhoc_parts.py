"""The parts of scenario 3 (``GET /rest/adhoc/localhost``) timed in-process, against a real Prosody.

    python -m bench.adhoc_parts [--n 3000]

Starts a throwaway Prosody, logs ``admin`` in through a real ``CallerPool`` and takes the real
disco#items reply of the commands node (the server's bytes, captured on the session). Then, for
``--n`` iterations each, CPU time (``time.process_time``) per call of:
- the whole XMPP round trip as the handler makes it (``Service.caller_request``; Prosody's own time
  is in another process and not counted, the wait for it is), and ``CallerPool.authenticate`` cached;
- the pieces of that path alone: the request's serialisation (``IqTracker.send`` with a null
  writer), parsing the reply's bytes on the session's parser, ``commands_list``, the answer's XML
  and JSON (``encode``).
``--profile`` prints cProfile's top functions of the round-trip loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from slixmpp.jid import JID

from bench.run import DOMAIN, USERS
from tigase_rest.coding import JSON, XML, encode
from tigase_rest.config import from_dict
from tigase_rest.service import Parts, Service
from tigase_rest.xmpp.forms import commands_list, disco_commands_iq
from tigase_rest.xmpp.iq import IqTracker
from tigase_rest.xmpp.sessions import CallerPool
from tigase_rest.xmpp.stanzas import CLIENT_NS
from tools.prosody import ProsodyServer


def per_call(fn, n: int) -> float:
    """µs of CPU per call."""
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


async def per_call_async(fn, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - start) / n * 1e6


async def measure(prosody: ProsodyServer, n: int, profile: bool) -> None:
    config = from_dict({"xmpp": {**prosody.component_config(), "iq_timeout": 10},
                        "auth": {"admins": [f"admin@{DOMAIN}"]}}, {})
    pool = CallerPool(config)
    parts = Parts(link=None, pool=pool, privileges=None, statuses=None, avatars=None, bosh=None,  # type: ignore[arg-type]
                  accounts=None, health=dict, stopping=asyncio.Event())  # type: ignore[arg-type]
    password = USERS["admin"]
    caller = await pool.authenticate(JID(f"admin@{DOMAIN}"), password, "127.0.0.1")
    service = Service(parts, config, caller, password)
    session = await pool.session(caller, password)

    captured: list[bytes] = []
    cls = type(session)
    feed = cls._feed  # noqa: SLF001 - capture the reply's bytes as the session reads them

    def capture(self, data: bytes) -> None:
        captured.append(data)
        feed(self, data)
    cls._feed = capture  # type: ignore[method-assign]  # noqa: SLF001
    reply = await service.caller_request(disco_commands_iq(DOMAIN))
    cls._feed = feed  # type: ignore[method-assign]  # noqa: SLF001
    raw = b"".join(captured)
    data = commands_list(reply)
    print(f"reply: {len(raw)} bytes, {len(data['items'])} items; answer: {len(encode(data, XML))} chars XML")

    async def round_trip():
        return commands_list(await service.caller_request(disco_commands_iq(DOMAIN)))

    async def auth():
        return await pool.authenticate(JID(f"admin@{DOMAIN}"), password, "127.0.0.1")

    for _ in range(200):  # warm-up
        await round_trip()
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            await round_trip()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)

    tracker = IqTracker(lambda text: None, CLIENT_NS, lambda: f"admin@{DOMAIN}")

    def send():
        iq = disco_commands_iq(DOMAIN)
        iq.set("id", "x-1")
        tracker.send(iq)

    from xml.etree.ElementTree import XMLPullParser
    header = session._header  # noqa: SLF001

    def parse():
        parser = XMLPullParser(("start", "end"))
        parser.feed(header)
        parser.feed(raw)
        for _ in parser.read_events():
            pass

    def parse_only_header():
        parser = XMLPullParser(("start", "end"))
        parser.feed(header)
        for _ in parser.read_events():
            pass

    def session_feed():
        session._feed(raw)  # noqa: SLF001 - the reply as the session reads it (no request waits for it)

    floor = XMLPullParser(("start", "end"))
    floor.feed(header)

    def parser_floor():
        floor.feed(raw)
        for _ in floor.read_events():
            pass

    rows = [
        ("caller_request + commands_list (round trip, our CPU only)", round_trip),
        ("CallerPool.authenticate (cached)", auth),
        ("disco_commands_iq + IqTracker.send (serialize)", send),
        ("parse the reply on a new parser (minus a header-only parser)",
         (parse, parse_only_header)),
        ("ClientStream._feed(reply bytes) on the live session's parser", session_feed),
        ("  of which XMLPullParser.feed + read_events alone", parser_floor),
        ("commands_list(reply)", lambda: commands_list(reply)),
        ("encode(answer, XML)", lambda: encode(data, XML)),
        ("encode(answer, JSON)", lambda: encode(data, JSON)),
    ]
    # Interleaved: every row gets a batch in each of ``rounds`` rounds; the minimum per batch is
    # reported (the machine is shared: other jobs only ever add time).
    rounds = 15
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, fn in rows:
            if isinstance(fn, tuple):
                us = per_call(fn[0], n // rounds) - per_call(fn[1], n // rounds)
            elif asyncio.iscoroutinefunction(fn):
                us = await per_call_async(fn, n // rounds)
            else:
                us = per_call(fn, n // rounds)
            best[label] = min(best.get(label, us), us)
    rows = list(best.items())
    for label, us in rows:
        print(f"{us:8.1f} µs  {label}")
    await pool.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adhoc-parts-"))
    prosody = ProsodyServer(work / "prosody", log_level="warn")
    for user, password in USERS.items():
        prosody.register(user, password)
    prosody.start()
    try:
        asyncio.run(measure(prosody, args.n, args.profile))
    finally:
        prosody.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
