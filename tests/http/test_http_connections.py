"""Connections against the real HTTP server (tests/http/conftest.py runs ``RestServer.web_server``
as app.serve does): heads that trickle, idle keep-alive, the connection bound, the Server header."""

from __future__ import annotations

import asyncio
import time

from fakes import API_KEY

HEALTH = f"GET /rest/health HTTP/1.1\r\nHost: localhost\r\nApi-Key: {API_KEY}\r\n\r\n".encode()


async def connect(api):
    return await asyncio.open_connection(api.client.server.host, api.client.server.port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if still open then."""
    start = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), seconds):
            pass
    except asyncio.TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    return head + await reader.readexactly(length)


async def test_50_connections_sending_half_a_header_are_closed_after_header_timeout(make_api):
    api = await make_api(http={"header_timeout": 0.5})
    conns = [await connect(api) for _ in range(50)]
    for _, writer in conns:
        writer.write(b"GET /rest/health HTTP/1.1\r\nHost: loc")
    # meanwhile a whole request is answered
    reader, writer = await connect(api)
    writer.write(HEALTH)
    assert b" 200 " in (await read_answer(reader)).split(b"\r\n")[0]
    waited = await asyncio.gather(*(closed_within(r, 3) for r, _ in conns))
    assert all(w is not None and w < 1.5 for w in waited), waited
    for _, w in conns:
        w.close()


async def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(make_api):
    api = await make_api(http={"header_timeout": 0.3})
    reader, writer = await connect(api)
    assert (await closed_within(reader, 2)) is not None
    writer.close()


async def test_an_idle_keep_alive_connection_waits_for_keepalive_timeout_not_header_timeout(make_api):
    api = await make_api(http={"header_timeout": 0.3, "keepalive_timeout": 1.5})
    reader, writer = await connect(api)
    writer.write(HEALTH)
    await read_answer(reader)
    assert await closed_within(reader, 0.8) is None  # idle past header_timeout: still open
    writer.write(HEALTH)  # and usable
    assert b" 200 " in (await read_answer(reader)).split(b"\r\n")[0]
    writer.write(b"GET /rest/health HTTP/1.1\r\n")  # the next head trickles: header_timeout again
    waited = await closed_within(reader, 3)
    assert waited is not None and waited < 1.0, waited
    writer.close()


async def test_a_slow_body_is_not_a_slow_head(make_api):
    api = await make_api(http={"header_timeout": 0.3, "body_timeout": 5})
    reader, writer = await connect(api)
    body = b"<message to='bob@example.com'><body>x</body></message>"
    writer.write(b"POST /rest/stream/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/xml\r\n"
                 b"Authorization: " + __import__("fakes").basic(__import__("fakes").ADMIN).encode() +
                 b"\r\nApi-Key: " + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 10):  # the body trickles for longer than header_timeout
        writer.write(body[i:i + 10])
        await asyncio.sleep(0.1)
    assert b" 200 " in (await read_answer(reader)).split(b"\r\n")[0]
    writer.close()


async def test_over_max_connections_a_new_connection_gets_503_and_is_closed(make_api):
    api = await make_api(http={"max_connections": 3})
    held = [await connect(api) for _ in range(3)]
    await asyncio.sleep(0.05)
    reader, writer = await connect(api)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
    writer.close()
    held[0][1].close()  # one goes: a new connection is served again
    await asyncio.sleep(0.1)
    reader, writer = await connect(api)
    writer.write(HEALTH)
    assert b" 200 " in (await read_answer(reader)).split(b"\r\n")[0]
    for _, w in held[1:] + [(reader, writer)]:
        w.close()


async def test_every_answer_says_server_tigase_rest_without_versions(api):
    ok = await api.get("/rest/health", headers={"Api-Key": API_KEY})
    refused = await api.get("/rest/health")
    outside = await api.get("/elsewhere")
    index = await api.get("/rest/")
    for response in (ok, refused, outside, index):
        assert response.headers["Server"] == "tigase-rest", (response.status, response.headers)
    # aiohttp's own answer to a request it cannot parse
    reader, writer = await connect(api)
    writer.write(b"GET /rest/ HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.split(b" ")[1] == b"400" and b"Server: tigase-rest\r\n" in answer, answer[:300]
    assert b"Python" not in answer and b"aiohttp" not in answer
