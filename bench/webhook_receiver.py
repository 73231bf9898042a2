"""The webhook bot of ``make bench`` (step W): answers every POST with 200 and ``{"body": "echo"}``.

    python -m bench.webhook_receiver --port 8081

As small as a receiver gets (aiohttp's low-level server, the request body read and dropped), so that
the measured cost is the component's. Every request gets the same answer: the component turns it into
a chat message from the bot back to the sender. Runs until killed; the bench reads its CPU from /proc.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

ANSWER = b'{"body": "echo"}'


async def handle(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def serve(host: str, port: int) -> None:
    runner = web.ServerRunner(web.Server(handle, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()  # until killed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
