"""The "direct" baseline: the same traffic as the REST scenarios, sent by plain c2s clients.

    python -m bench.direct --mode ping|commands|message|bot --port C2S_PORT --seconds 10 --conns 16 ...

A raw-socket asyncio client, not slixmpp: it writes pre-serialized stanzas and finds replies by
scanning start tags for ``id``/``type`` with one regex, so that the client costs as little CPU as
possible and the number measured is the server's (a slixmpp client spends ~100 us of Python per
stanza and becomes the bottleneck long before Prosody does).

- ``ping`` / ``commands``: ``--conns`` sessions of one user, each keeping ``--inflight`` XEP-0199 pings (or
  XEP-0050 command lists: disco#items of the commands node) to the domain in flight (closed loop: a reply sends the next ping). Latency = send -> reply.
- ``message``: ``--conns`` sender sessions plus one receiver session (``--rx-user``, resource
  ``--rx-resource``); each sender keeps ``--inflight`` chat messages in flight, where "in flight"
  means "not yet arrived at the receiver". Latency = send -> arrival (one way through the server).
- ``bot``: ``--conns`` sessions, each keeping ``--inflight`` chat messages to ``--to`` (a webhook bot
  behind the component, e.g. ``echo@http.localhost``) in flight; each message the bot sends back to
  that session ends one (the replies carry no id: the oldest message of the session is the one
  answered, exact with ``--inflight 1``). Latency = send -> the bot's reply (a round trip).

Prints one line ``DIRECT_JSON {...}`` with the counts and latency percentiles. Bounded: it stops
sending after ``--seconds`` and waits at most ``--drain`` seconds for the last replies.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import re
import sys
import time

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")
# A start tag of a top-level stanza we care about; attribute values in ' or ".
START_TAG = re.compile(rb"<(iq|message)(\s[^>]*)>")
ATTR_ID = re.compile(rb"""\sid=['"]([^'"]+)['"]""")
ATTR_TYPE = re.compile(rb"""\stype=['"]([^'"]+)['"]""")
LOGIN_TIMEOUT = 15.0
# The IQ of each round-trip mode; p%d_%d becomes the wire id.
IQS = {
    "ping": "<iq type='get' to='{domain}' id='p%d_%d'><ping xmlns='urn:xmpp:ping'/></iq>",
    # what GET /rest/adhoc/{domain} sends over the caller's session
    "commands": "<iq type='get' to='{domain}' id='p%d_%d'><query xmlns='http://jabber.org/protocol/disco#items' "
                "node='http://jabber.org/protocol/commands'/></iq>",
}


class LoginError(Exception):
    pass


class Conn:
    """One logged-in c2s session over a raw asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, jid: str):
        self.reader = reader
        self.writer = writer
        self.jid = jid
        self.tail = b""

    async def _read_until(self, pattern: re.Pattern) -> re.Match:
        while True:
            m = pattern.search(self.tail)
            if m:
                self.tail = self.tail[m.end():]
                return m
            data = await self.reader.read(65536)
            if not data:
                raise LoginError(f"{self.jid}: the server closed the stream: {self.tail[-300:]!r}")
            self.tail += data

    def close(self) -> None:
        try:
            self.writer.write(b"</stream:stream>")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.writer.close()


async def login(host: str, port: int, domain: str, user: str, password: str, resource: str) -> Conn:
    reader, writer = await asyncio.open_connection(host, port)
    conn = Conn(reader, writer, f"{user}@{domain}/{resource}")
    features = re.compile(rb"</stream:features>")
    writer.write(STREAM_HEADER.format(domain=domain).encode())
    await conn._read_until(features)
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
    m = await conn._read_until(re.compile(rb"<success[^>]*/>|</success>|</failure>|<failure[^>]*/>"))
    if b"failure" in m.group(0):
        raise LoginError(f"{conn.jid}: SASL PLAIN refused")
    writer.write(STREAM_HEADER.format(domain=domain).encode())
    await conn._read_until(features)
    writer.write(f"<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 f"<resource>{resource}</resource></bind></iq>".encode())
    m = await conn._read_until(re.compile(rb"<iq\s[^>]*id=['\"]bind_1['\"][^>]*>.*?</iq>", re.S))
    if b"result" not in m.group(0):
        raise LoginError(f"{conn.jid}: resource binding failed: {m.group(0)!r}")
    return conn


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self.late = 0  # completed after the deadline (not counted in the rate)

    def answered(self, failed: bool, t0: float, now: float, deadline: float) -> None:
        """One answer (a reply, or a message that arrived) to what was sent at ``t0``."""
        if failed:
            self.errors += 1
        elif now <= deadline:
            self.latencies.append(now - t0)
        else:
            self.late += 1

    def summary(self, seconds: float) -> dict:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(p: float) -> float:
            return lat[min(n - 1, int(p / 100 * n))] * 1000 if n else 0.0

        return {
            "ops": n, "errors": self.errors, "sent": self.sent, "late": self.late, "seconds": seconds,
            "rate": n / seconds if seconds else 0.0,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat[-1] * 1000 if n else 0.0,
            "mean_ms": (sum(lat) / n * 1000) if n else 0.0,
        }


async def pump(conn: Conn, on_stanza) -> None:
    """Read until EOF; call on_stanza(name, id, type) for each complete start tag of iq/message."""
    tail = conn.tail
    reader = conn.reader
    while True:
        data = await reader.read(262144)
        if not data:
            return
        buf = tail + data if tail else data
        end = buf.rfind(b">") + 1
        for m in START_TAG.finditer(buf, 0, end):
            attrs = m.group(2)
            i = ATTR_ID.search(attrs)
            t = ATTR_TYPE.search(attrs)
            on_stanza(m.group(1), i.group(1) if i else b"", t.group(1) if t else b"")
        tail = buf[end:]


async def finish(done: asyncio.Future, pumps: list[asyncio.Future], args) -> None:
    """Until every answer in flight at the deadline came (``done``), at most ``drain`` s past it;
    then the readers stop."""
    try:
        await asyncio.wait_for(asyncio.shield(done), args.seconds + args.drain)
    except asyncio.TimeoutError:
        pass
    for p in pumps:
        p.cancel()


async def run_ping(args, conns: list[Conn], stats: Stats) -> float:
    ping = IQS[args.mode].format(domain=args.domain)
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    start = clock()
    deadline = start + args.seconds
    outstanding = [0]
    done = loop.create_future()

    def worker(index: int, conn: Conn):
        sent: dict[bytes, float] = {}
        seq = [0]
        write = conn.writer.write

        def send() -> None:
            seq[0] += 1
            wire_id = f"p{index}_{seq[0]}"
            sent[wire_id.encode()] = clock()
            write((ping % (index, seq[0])).encode())
            stats.sent += 1
            outstanding[0] += 1

        def on_stanza(name: bytes, ident: bytes, kind: bytes) -> None:
            t0 = sent.pop(ident, None)
            if t0 is None:
                return
            now = clock()
            outstanding[0] -= 1
            stats.answered(kind != b"result", t0, now, deadline)
            if now < deadline:
                send()
            elif outstanding[0] == 0 and not done.done():
                done.set_result(None)

        for _ in range(args.inflight):
            send()
        return on_stanza

    pumps = [asyncio.ensure_future(pump(c, worker(i, c))) for i, c in enumerate(conns)]
    await finish(done, pumps, args)
    return min(clock(), deadline) - start


async def run_message(args, conns: list[Conn], rx: Conn, stats: Stats) -> float:
    to = f"{args.rx_user}@{args.domain}/{args.rx_resource}"
    template = f"<message type='chat' to='{to}' id='m%d_%d'><body>bench message</body></message>"
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    start = clock()
    deadline = start + args.seconds
    sent: dict[bytes, tuple[float, object]] = {}
    done = loop.create_future()

    def sender(index: int, conn: Conn):
        seq = [0]
        write = conn.writer.write

        def send() -> None:
            seq[0] += 1
            sent[f"m{index}_{seq[0]}".encode()] = (clock(), send)
            write((template % (index, seq[0])).encode())
            stats.sent += 1

        for _ in range(args.inflight):
            send()

    def on_arrival(name: bytes, ident: bytes, kind: bytes) -> None:
        if name != b"message":
            return
        entry = sent.pop(ident, None)
        if entry is None:
            return
        t0, send = entry
        now = clock()
        stats.answered(kind == b"error", t0, now, deadline)
        if now < deadline:
            send()
        elif not sent and not done.done():
            done.set_result(None)

    rx_pump = asyncio.ensure_future(pump(rx, on_arrival))

    def on_sender_stanza(name: bytes, ident: bytes, kind: bytes) -> None:
        # A message bounced to the sender (type=error) never reaches the receiver.
        if kind == b"error" and ident in sent:
            on_arrival(b"message", ident, kind)

    pumps = [asyncio.ensure_future(pump(c, on_sender_stanza)) for c in conns]
    for i, c in enumerate(conns):
        sender(i, c)
    await finish(done, [rx_pump, *pumps], args)
    return min(clock(), deadline) - start


async def run_bot(args, conns: list[Conn], stats: Stats) -> float:
    to = args.to or f"echo@http.{args.domain}"
    template = f"<message type='chat' to='{to}' id='b%d_%d'><body>bench message</body></message>"
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    start = clock()
    deadline = start + args.seconds
    outstanding = [0]
    done = loop.create_future()

    def worker(index: int, conn: Conn):
        waiting: collections.deque[float] = collections.deque()  # send times, oldest first
        seq = [0]
        write = conn.writer.write

        def send() -> None:
            seq[0] += 1
            waiting.append(clock())
            write((template % (index, seq[0])).encode())
            stats.sent += 1
            outstanding[0] += 1

        def on_stanza(name: bytes, ident: bytes, kind: bytes) -> None:
            if name != b"message" or not waiting:
                return
            t0 = waiting.popleft()
            now = clock()
            outstanding[0] -= 1
            stats.answered(kind == b"error", t0, now, deadline)
            if now < deadline:
                send()
            elif outstanding[0] == 0 and not done.done():
                done.set_result(None)

        for _ in range(args.inflight):
            send()
        return on_stanza

    pumps = [asyncio.ensure_future(pump(c, worker(i, c))) for i, c in enumerate(conns)]
    await finish(done, pumps, args)
    return min(clock(), deadline) - start


async def run_slixmpp_ping(args, stats: Stats) -> float:
    """The same pings from ONE slixmpp client with ``conns * inflight`` concurrent tasks: what a
    typical Python client achieves (its own CPU is the limit, not the server's)."""
    from xml.etree.ElementTree import Element

    from tools.prosody import login as slix_login, logout, plain_client

    client = plain_client(f"{args.user}@{args.domain}/direct-slixmpp", args.password)
    await slix_login(client, args.host, args.port, LOGIN_TIMEOUT)
    clock = time.monotonic
    start = clock()
    deadline = start + args.seconds

    async def worker() -> None:
        while clock() < deadline:
            iq = client.Iq()
            iq["type"] = "get"
            iq["to"] = args.domain
            iq.xml.append(Element("{urn:xmpp:ping}ping"))
            stats.sent += 1
            t0 = clock()
            try:
                reply = await iq.send(timeout=10)
            except Exception:  # noqa: BLE001 - IqError/IqTimeout: counted, go on
                stats.errors += 1
                continue
            now = clock()
            if reply["type"] != "result":
                stats.errors += 1
            elif now <= deadline:
                stats.latencies.append(now - t0)
            else:
                stats.late += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(args.conns * args.inflight))),
                               args.seconds + args.drain)
    except asyncio.TimeoutError:
        pass
    finally:
        await logout(client)
    return min(clock(), deadline) - start


async def main_async(args) -> dict:
    if args.client == "slixmpp":
        if args.mode != "ping":
            raise LoginError("--client slixmpp measures pings only")
        stats = Stats()
        cpu0 = time.process_time()
        seconds = await run_slixmpp_ping(args, stats)
        return {"mode": args.mode, "client": "slixmpp", "conns": 1, "inflight": args.conns * args.inflight,
                **stats.summary(seconds), "client_cpu_s": time.process_time() - cpu0}
    conns: list[Conn] = []
    rx = None
    try:
        logins = [login(args.host, args.port, args.domain, args.user, args.password, f"direct-{i}")
                  for i in range(args.conns)]
        conns = list(await asyncio.wait_for(asyncio.gather(*logins), LOGIN_TIMEOUT))
        if args.mode == "message":
            rx = await asyncio.wait_for(login(args.host, args.port, args.domain, args.rx_user, args.rx_password,
                                              args.rx_resource), LOGIN_TIMEOUT)
        stats = Stats()
        cpu0 = time.process_time()
        if args.mode in IQS:
            seconds = await run_ping(args, conns, stats)
        elif args.mode == "bot":
            seconds = await run_bot(args, conns, stats)
        else:
            seconds = await run_message(args, conns, rx, stats)
        result = {"mode": args.mode, "client": "raw", "conns": args.conns, "inflight": args.inflight, **stats.summary(seconds),
                  "client_cpu_s": time.process_time() - cpu0}
        return result
    finally:
        for c in conns + ([rx] if rx else []):
            c.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=(*IQS, "message", "bot"), required=True)
    p.add_argument("--client", choices=("raw", "slixmpp"), default="raw",
                   help="slixmpp: one slixmpp client with conns*inflight tasks (ping only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alicepass")
    p.add_argument("--rx-user", default="bob")
    p.add_argument("--rx-password", default="bobpass")
    p.add_argument("--rx-resource", default="direct")
    p.add_argument("--to", default="", help="bot mode: the bot's JID (default echo@http.DOMAIN)")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--inflight", type=int, default=1, help="in flight per connection")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--drain", type=float, default=5)
    args = p.parse_args(argv)
    try:
        result = asyncio.run(main_async(args))
    except (LoginError, OSError, ConnectionError, asyncio.TimeoutError) as e:
        print(f"direct: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("DIRECT_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
