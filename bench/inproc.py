"""The component's own CPU per request, in one process, without sockets: the Python we can change.

    python -m bench.inproc                    # message, IQ and a trivial GET; best of 30 batches each
    python -m bench.inproc --batches 60 --only message

Why: on this shared 2-core VM the CPU per request that ``make bench`` measures (``/proc``, with
Prosody and wrk on the same cores) drifts by up to 2x between minutes, which hides changes of a few
µs. Here the real ``RestServer`` (the real ``scripts/rest``, the real ``CallerPool`` with the admin's
credential verified and cached, the real ``IqTracker`` and stanza serialiser) serves requests that
are fed as raw HTTP bytes to aiohttp's real protocol (``Connection``: its C parser, request objects,
response writer) through a transport that keeps what is written: what is left out is the kernel
(socket calls, epoll) and the XMPP server. 16 connections each get one request per batch (the shape
of ``wrk -c16``); an IQ is answered on the next turn of the loop by the element a server would send.
Reported: CPU time (``time.process_time``) per request, the best batch of N (the minimum is what
the code costs when nothing else interferes) and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path
from xml.etree.ElementTree import fromstring

from bench.http_server import build_rest
from bench.run import API_KEY, DOMAIN, MSG_BODY, PING_BODY, USERS

CONNECTIONS = 16
ADMIN = f"admin@{DOMAIN}"


def http_request(method: str, path: str, headers: dict[str, str], body: str = "") -> bytes:
    data = body.encode()
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8080", *(f"{k}: {v}" for k, v in headers.items())]
    if data:
        head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{USERS['admin']}".encode()).decode(),
        "Api-Key": API_KEY}
REQUESTS = {
    "message": http_request("POST", "/rest/stream/", {**AUTH, "Content-Type": "application/xml"}, MSG_BODY),
    "iq": http_request("POST", "/rest/stream/", {**AUTH, "Content-Type": "application/xml"}, PING_BODY),
    "health": http_request("GET", "/rest/health", {"Api-Key": API_KEY}),
}


class Transport(asyncio.Transport):
    """Keeps nothing: counts the responses (aiohttp writes a small response in one write)."""

    def __init__(self, done):
        super().__init__()
        self.done = done

    def write(self, data) -> None:
        self.done()

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class Link:
    """The component link's send path (from, IqTracker: renamespace, serialise, checks, encode);
    an IQ get is answered on the next turn of the loop with the reply Prosody would send."""

    connected = True

    def __init__(self, component_jid: str):
        from tigase_rest.xmpp.iq import IqTracker
        from tigase_rest.xmpp.stanzas import COMPONENT_NS

        self.component_jid = component_jid
        self.iqs = IqTracker(self._write, COMPONENT_NS, lambda: DOMAIN)
        self.loop = asyncio.get_event_loop()

    def _write(self, text: str) -> None:
        text.encode("utf-8")  # what slixmpp's send_raw does before the socket write
        if text.startswith("<iq"):
            wire_id = text.split(' id="', 1)[1].split('"', 1)[0]
            self.loop.call_soon(self._answer, wire_id)

    def _answer(self, wire_id: str) -> None:
        # parsed as the link's expat parser would give it: a fresh element per reply
        reply = fromstring(f'<iq xmlns="jabber:component:accept" type="result" from="{DOMAIN}" '
                           f'to="{self.component_jid}" id="{wire_id}"/>')
        self.iqs.take(reply)

    def send(self, stanza) -> None:
        if not stanza.get("from"):
            stanza.set("from", self.component_jid)
        self.iqs.send(stanza)

    async def request(self, iq, timeout=None):
        if not iq.get("from"):
            iq.set("from", self.component_jid)
        return await self.iqs.request(iq, timeout or 10)


def primed_pool(config):
    """The real CallerPool with the admin's credential verified, as after his first request."""
    from tigase_rest.xmpp.sessions import CallerPool, _digest, _Verified

    pool = CallerPool(config)
    salt = os.urandom(16)
    pool._verified[ADMIN] = _Verified(salt, _digest(salt, USERS["admin"]), time.monotonic() + 3600, True)  # noqa: SLF001
    return pool


async def measure(rest, request: bytes, batches: int, per_batch: int) -> list[float]:
    server = rest.web_server()
    loop = asyncio.get_running_loop()
    pending = 0
    batch_done: asyncio.Future | None = None

    def done() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0 and batch_done is not None and not batch_done.done():
            batch_done.set_result(None)

    connections = []
    for _ in range(CONNECTIONS):
        proto = server()
        proto.connection_made(Transport(done))
        connections.append(proto)
    results = []
    for n in range(batches + 2):  # two warm-up batches
        started = time.process_time()
        for _ in range(per_batch):
            batch_done = loop.create_future()
            pending = CONNECTIONS
            for proto in connections:
                proto.data_received(request)
            await asyncio.wait_for(batch_done, 10)
        if n >= 2:
            results.append((time.process_time() - started) / (per_batch * CONNECTIONS) * 1e6)
    for proto in connections:
        proto.connection_lost(None)
    return results


async def main_async(args) -> dict[str, list[float]]:
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp:
        from tigase_rest.config import from_dict

        link = Link(f"rest.{DOMAIN}")
        pool = primed_pool(from_dict({"xmpp": {"secret": "s", "component_jid": f"rest.{DOMAIN}", "domain": DOMAIN}},
                                     {}))
        _config, rest = build_rest(Path(tmp), link=link, pool=pool)
        for name in args.only.split(","):
            out[name] = await measure(rest, REQUESTS[name], args.batches, args.per_batch)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--per-batch", type=int, default=20, help="requests per connection in one batch")
    parser.add_argument("--only", default="message,iq,health")
    args = parser.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING)
    for name, runs in asyncio.run(main_async(args)).items():
        print(f"{name:<8} best {min(runs):6.1f} µs   median {statistics.median(runs):6.1f} µs   "
              f"({len(runs)} batches of {args.per_batch * CONNECTIONS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
