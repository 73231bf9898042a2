"""The parts of scenario 3 (``GET /rest/adhoc/localhost``) timed in-process, against a real Prosody.

    python -m bench.adhoc_parts [--n 6000] [--base /path/to/an/older/tree] [--profile]

Starts a throwaway Prosody, logs ``admin`` in through a real ``CallerPool`` and captures the real
disco#items reply of the commands node (the server's bytes, as the session read them) and, for
comparison, the reply to an XEP-0199 ping. Then CPU time (``time.process_time``) per call of:
- the XMPP round trip as the handler makes it (``Service.caller_request`` + ``commands_list``, one
  at a time: Prosody's own time is in another process and not counted), ``CallerPool.authenticate``
  with cached credentials;
- the pieces alone: the request's serialisation (``IqTracker.send``, null writer), the reply's bytes
  fed to a ``ClientStream`` (parser, stanza boundaries, IQ matching), ``commands_list``, the
  answer's XML and JSON (``coding.encode``); the same for the ping's reply and answer.
With ``--base``, the pieces that live in ``coding`` and ``xmpp/c2s`` are also timed with that
tree's code (loaded as a second package), in the same rounds.

The machine is shared: the rows are measured in interleaved rounds (every row one batch per round)
and the minimum over the rounds is reported, since other jobs only ever add time.
``--profile`` prints cProfile's top functions (CPU time) of the round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import importlib.util
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

from slixmpp.jid import JID

from bench.run import DOMAIN, USERS
from tigase_rest import coding
from tigase_rest.config import from_dict
from tigase_rest.service import Parts, Service
from tigase_rest.xmpp import c2s
from tigase_rest.xmpp.forms import commands_list, disco_commands_iq
from tigase_rest.xmpp.iq import IqTracker
from tigase_rest.xmpp.sessions import CallerPool
from tigase_rest.xmpp.stanzas import CLIENT_NS
from tools.prosody import ProsodyServer

PING_ANSWER = {"iq": {"type": "result", "from": DOMAIN, "id": "1"}}  # about what a ping's answer encodes


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


def load_base(tree: Path):
    """``tree``'s tigase_rest as the package ``base_tigase_rest``: (coding, c2s) modules."""
    spec = importlib.util.spec_from_file_location(
        "base_tigase_rest", tree / "tigase_rest" / "__init__.py",
        submodule_search_locations=[str(tree / "tigase_rest")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["base_tigase_rest"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("base_tigase_rest.coding"), importlib.import_module("base_tigase_rest.xmpp.c2s")


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def stream_feeder(module, header: bytes, raw: bytes):
    """A ClientStream of ``module`` past its stream header; the returned function feeds it ``raw``
    (a reply no request waits for: parsed, matched against no pending IQ, dropped)."""
    stream = module.ClientStream(JID(f"admin@{DOMAIN}"))
    stream.connection_made(_NullTransport())
    stream._open_stream(DOMAIN)  # noqa: SLF001
    stream._feed(header)  # noqa: SLF001
    stream._inbox = None  # noqa: SLF001 - as after a login: unmatched stanzas are dropped
    return lambda: stream._feed(raw)  # noqa: SLF001


async def measure(prosody: ProsodyServer, n: int, profile: bool, base: Path | None, gc_mode: str) -> None:
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
    feed = cls._feed  # noqa: SLF001 - capture the replies' bytes as the session reads them

    def capture(self, data: bytes) -> None:
        captured.append(data)
        feed(self, data)
    cls._feed = capture  # type: ignore[method-assign]  # noqa: SLF001
    reply = await service.caller_request(disco_commands_iq(DOMAIN))
    raw = b"".join(captured)
    captured.clear()
    ping = Element("iq", {"type": "get", "to": DOMAIN})
    SubElement(ping, "{urn:xmpp:ping}ping")
    await service.caller_request(ping)
    raw_ping = b"".join(captured)
    cls._feed = feed  # type: ignore[method-assign]  # noqa: SLF001
    header = b"<?xml version='1.0'?>" + session._header  # noqa: SLF001
    data = commands_list(reply)
    print(f"reply: {len(raw)} bytes, {len(data['items'])} items; answer: {len(coding.encode(data, coding.XML))} "
          f"chars XML, {len(coding.encode(data, coding.JSON))} JSON; a ping's reply: {len(raw_ping)} bytes")

    async def round_trip():
        return commands_list(await service.caller_request(disco_commands_iq(DOMAIN)))

    async def ping_round_trip():
        iq = Element("iq", {"type": "get", "to": DOMAIN})
        SubElement(iq, "{urn:xmpp:ping}ping")
        return await service.caller_request(iq)

    async def auth():
        return await pool.authenticate(JID(f"admin@{DOMAIN}"), password, "127.0.0.1")

    for _ in range(200):  # warm-up
        await round_trip()
    if gc_mode == "freeze":
        gc.freeze()
    elif gc_mode == "off":
        gc.disable()
    if profile:
        prof = cProfile.Profile(time.process_time)  # CPU time, not the wait for Prosody
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

    versions = [("", coding, c2s)]
    if base is not None:
        versions.insert(0, ("base: ", *load_base(base)))
    rows: list[tuple[str, object]] = [
        ("caller_request + commands_list, one at a time (our CPU only)", round_trip),
        ("the same with a ping instead (a 94-byte reply)", ping_round_trip),
        ("CallerPool.authenticate (cached credentials)", auth),
        ("disco_commands_iq + IqTracker.send (serialize, null writer)", send),
        ("commands_list(reply)", lambda: commands_list(reply)),
    ]
    for label, coding_, c2s_ in versions:
        rows += [
            (f"{label}ClientStream._feed(the reply's bytes)", stream_feeder(c2s_, header, raw)),
            (f"{label}ClientStream._feed(a ping reply's bytes)", stream_feeder(c2s_, header, raw_ping)),
            (f"{label}encode(answer, XML)", lambda m=coding_: m.encode(data, m.XML)),
            (f"{label}encode(answer, JSON)", lambda m=coding_: m.encode(data, m.JSON)),
            (f"{label}encode(a ping's answer, XML)", lambda m=coding_: m.encode(PING_ANSWER, m.XML)),
        ]
    rounds = 15
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, fn in rows:
            if asyncio.iscoroutinefunction(fn):
                us = await per_call_async(fn, n // rounds)
            else:
                us = per_call(fn, n // rounds)  # type: ignore[arg-type]
            best[label] = min(best.get(label, us), us)
    t0 = os.times()
    for _ in range(n // 3):
        await round_trip()
    t1 = os.times()
    k = n // 3
    print(f"round trip, mean: {(t1.user - t0.user) / k * 1e6:.0f} µs user, "
          f"{(t1.system - t0.system) / k * 1e6:.0f} µs system")
    for label, us in best.items():
        print(f"{us:8.1f} µs  {label}")
    await pool.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                    help="the cyclic garbage collector: on (as the component), frozen after the login, or off")
    ap.add_argument("--base", type=Path, default=None, help="an older source tree to compare with")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adhoc-parts-"))
    prosody = ProsodyServer(work / "prosody", log_level="warn")
    for user, password in USERS.items():
        prosody.register(user, password)
    prosody.start()
    try:
        asyncio.run(measure(prosody, args.n, args.profile, args.base, args.gc))
    finally:
        prosody.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
