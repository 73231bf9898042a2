"""The real HTTP server and handler scripts, with the XMPP side faked (see fakes.py).

``api``: a test client on the real ``scripts/rest`` tree. ``make_api(...)``: the same with config
overrides or another scripts folder. The parts are wired as ``app.serve`` wires them, with a
``FakeLink`` where the component link would be and a ``FakePool`` for the caller logins.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import RawTestServer
from aiohttp.web import ServerRunner

from fakes import Api, FakeLink, FakePool, make_config
from tigase_rest.features.accounts.service import Accounts
from tigase_rest.features.avatar.service import Avatars
from tigase_rest.features.bosh import BoshPrebinding
from tigase_rest.features.presence.service import ExternalStatuses
from tigase_rest.features.presence.store import SqliteStatusStore
from tigase_rest.http.auth import ApiKeyChecker
from tigase_rest.http.server import Current, RestServer
from tigase_rest.loader import routes_for
from tigase_rest.service import Parts
from tigase_rest.xmpp.privilege import PrivilegeTracker


class RestTestServer(RawTestServer):
    """aiohttp's test server running the server ``app.serve`` runs (``RestServer.web_server``)."""

    def __init__(self, rest: RestServer):
        super().__init__(rest.handle)
        self.rest = rest

    async def _make_runner(self, debug: bool = True, **kwargs) -> ServerRunner:
        return ServerRunner(self.rest.web_server(), debug=debug, **kwargs)


@pytest.fixture
def make_api(aiohttp_client, tmp_path):
    async def make(scripts_dir: Path | None = None, **sections: dict) -> Api:
        config = make_config(scripts_dir, **{"storage": {"data_dir": str(tmp_path / "data")}, **sections})
        link, pool = FakeLink(), FakePool()
        privileges = PrivilegeTracker(link, config.xmpp.domain)
        parts = Parts(
            link=link, pool=pool, privileges=privileges,  # type: ignore[arg-type]
            statuses=ExternalStatuses(link, config.xmpp.domain, privileges, SqliteStatusStore(tmp_path / "statuses.db")),
            avatars=Avatars(link, privileges), bosh=BoshPrebinding(config.xmpp), accounts=Accounts(),
            health=lambda: {"xmpp_link": "up" if link.connected else "down"}, stopping=asyncio.Event())
        current = Current(config, routes_for(config), ApiKeyChecker(config.auth))
        rest = RestServer(lambda: current, pool.authenticate, parts)
        server = RestTestServer(rest)
        await server.start_server()
        client = await aiohttp_client(server)
        return Api(client, config, link, pool)

    return make


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()
