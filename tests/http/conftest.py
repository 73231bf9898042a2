"""The real aiohttp app and handler scripts, with the XMPP side faked (see fakes.py).

``api``: a test client on the real ``scripts/rest`` tree. ``make_api(...)``: the same with config
overrides or another scripts folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import Api, FakeLink, FakePool, make_config
from tigase_rest.app import Runtime
from aiohttp.test_utils import RawTestServer

from tigase_rest.http.server import RestServer


@pytest.fixture
def make_api(aiohttp_client):
    async def make(scripts_dir: Path | None = None, **sections: dict) -> Api:
        runtime = Runtime(make_config(scripts_dir, **sections))
        link, pool = FakeLink(), FakePool()
        runtime.link, runtime.pool = link, pool
        rest = RestServer(runtime)
        server = RawTestServer(rest.handle)
        await server.start_server(**rest.server_kwargs())  # aiohttp_client would start it without them
        client = await aiohttp_client(server)
        return Api(client, runtime, link, pool)

    return make


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()
