"""Fixtures for tests against a real XMPP server that the tests start themselves.

``--xmpp-server=prosody|ejabberd`` (default prosody) chooses the server for the session:

``xmpp_server``: one server for the session (tools.servers.XmppServer), with USERS registered.
``prosody``: the same object, for the tests that hold on Prosody only.
``component_factory`` / ``component``: the real tigase-rest process, configured for it.
``xmpp_client``: real slixmpp clients, disconnected after the test.

Which tests run on which server (markers, registered in setup.cfg):

- ``@pytest.mark.portable``: holds on every server; server-dependent expectations are read from
  the ``xmpp_server`` object (its quirk attributes, tools/servers.py).
- ``@pytest.mark.only_on("ejabberd")``: holds on the named servers only.
- no marker: Prosody only (most of these tests use Prosody's own features: mod_privilege's IQ
  permissions, vCard4, its log, a second edited Prosody...).

A test that does not hold on the chosen server is deselected (counted as "deselected" in the
summary), never skipped: a skip must not pass for a success.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clients import XmppClient, connect_client
from components import Component, launch, merge_sections, stop_all, wait_until_200
from tools.prosody import ProsodyServer, free_port
from tools.servers import SERVERS, XmppServer, make_server

# "test" is the user of the reference documentation's /rest/stream examples.
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass", "test": "testpass"}


def servers_of(item: pytest.Item) -> tuple[str, ...]:
    """The servers a test holds on, from its markers."""
    if item.get_closest_marker("portable"):
        return SERVERS
    only = item.get_closest_marker("only_on")
    if only:
        unknown = set(only.args) - set(SERVERS)
        if unknown or not only.args:
            raise pytest.UsageError(f"{item.nodeid}: only_on{only.args}: servers are {SERVERS}")
        return only.args
    return ("prosody",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything in this folder needs the real server: `pytest -m "not integration"` leaves it out.
    here = Path(__file__).parent
    chosen = config.getoption("xmpp_server")
    kept, deselected = [], []
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
            if chosen not in servers_of(item):
                deselected.append(item)
                continue
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def xmpp_server(pytestconfig: pytest.Config) -> Iterator[XmppServer]:
    # Any failure here is an error, never a skip: a missing server must not look like a pass.
    server = make_server(pytestconfig.getoption("xmpp_server"))
    try:
        server.start()  # ejabberd registers users only while it runs; Prosody either way
        for user, password in USERS.items():
            server.register(user, password)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def prosody(xmpp_server: XmppServer) -> ProsodyServer:
    """The session's server, for the tests that hold on Prosody only (deselected on any other)."""
    if not isinstance(xmpp_server, ProsodyServer):
        raise RuntimeError(f"this test uses Prosody's own features, but the server is {xmpp_server.name}: "
                           "mark it only_on('prosody') (unmarked tests are) rather than portable")
    return xmpp_server


@pytest.fixture
def component_factory(xmpp_server: XmppServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Component]]:
    """``start(*, wait=True, env=None, **sections)`` starts a component.

    ``sections`` override or extend the default config per section, e.g.
    ``start(auth={"open_access": True})``; None as a value removes that key. ``env`` adds
    environment variables (``TIGASE_REST_*`` from the outer environment are never passed on).
    With ``wait=False`` it returns at once, for tests of a component that must fail to start.
    """
    started: list[Component] = []

    def start(*, wait: bool = True, env: Mapping[str, str] | None = None, **sections: Mapping[str, Any]) -> Component:
        config = merge_sections(
            {
                "xmpp": xmpp_server.component_config(),
                "http": {"host": "127.0.0.1", "port": free_port()},  # the built-in scripts
                "auth": {"api_keys": ["test-key"], "admins": ["admin@localhost"]},
                "log": {"level": "debug"},
            },
            sections,
        )
        component = launch(tmp_path_factory.mktemp("component"), config, env)
        started.append(component)
        if wait:
            http = config["http"]
            wait_until_200(component, f"{component.url}{http.get('context_path', '/rest').rstrip('/')}/")
        return component

    yield start
    stop_all(started)


@pytest.fixture
def component(component_factory: Callable[..., Component]) -> Component:
    return component_factory()


@pytest.fixture
async def xmpp_client(xmpp_server: XmppServer) -> AsyncIterator[Callable[..., Any]]:
    """``await xmpp_client("alice", resource="test", presence=True)``: a logged-in client for a
    registered user; every client is disconnected after the test."""
    clients: list[XmppClient] = []

    async def connect(localpart: str, **kwargs: Any) -> XmppClient:
        client = await connect_client(
            f"{localpart}@{xmpp_server.domain}", xmpp_server.users[localpart], "127.0.0.1", xmpp_server.c2s_port,
            **kwargs,
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.disconnect()
