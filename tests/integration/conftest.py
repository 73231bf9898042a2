"""Fixtures for tests against a real Prosody that the tests start themselves.

``prosody``: one server for the session, with admin/alice/bob registered.
``component_factory`` / ``component``: the real tigase-rest process, configured for it.
``xmpp_client``: real slixmpp clients, disconnected after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clients import XmppClient, connect_client
from components import SCRIPTS_DIR, Component, launch, merge_sections, stop_all, wait_until_200
from tools.prosody import ProsodyServer, free_port

USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this folder needs the real server: `pytest -m "not integration"` skips it.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyServer]:
    # Any failure here is an error, never a skip: a missing server must not look like a pass.
    server = ProsodyServer(tmp_path_factory.mktemp("prosody"))
    for user, password in USERS.items():
        server.register(user, password)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def component_factory(prosody: ProsodyServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Component]]:
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
                "xmpp": prosody.component_config(),
                "http": {"host": "127.0.0.1", "port": free_port(), "scripts_dir": str(SCRIPTS_DIR)},
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
async def xmpp_client(prosody: ProsodyServer) -> AsyncIterator[Callable[..., Any]]:
    """``await xmpp_client("alice", resource="test", presence=True)``: a logged-in client for a
    registered user; every client is disconnected after the test."""
    clients: list[XmppClient] = []

    async def connect(localpart: str, **kwargs: Any) -> XmppClient:
        client = await connect_client(
            f"{localpart}@{prosody.domain}", prosody.users[localpart], "127.0.0.1", prosody.c2s_port, **kwargs
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.disconnect()
