"""Fixtures for the optional tests against a real ejabberd (``make test-ejabberd``).

Outside ``tests/`` on purpose: ``testpaths = tests`` keeps them out of ``make test`` (ejabberd is a
large package and starts in 2-3 s), and nothing here is ever skipped: a missing or broken server
is an error.

``ejabberd``: one server for the session, with admin/alice/bob/test registered.
``component_factory`` / ``component``: the real tigase-rest process, configured for it.
``xmpp_client``: real slixmpp clients, disconnected after the test.

The HTTP and XMPP client helpers are the integration tests' own (``tests/integration/rest.py``
and ``clients.py``, put on ``sys.path`` here), so both servers are driven by the same code.  The
component process is started by ``tests/integration/components.py`` for both.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clients import XmppClient, connect_client  # noqa: E402  (tests/integration)
from components import SCRIPTS_DIR, Component, launch, merge_sections, stop_all, wait_until_200  # noqa: E402
from tools.ejabberd import EjabberdServer  # noqa: E402
from tools.prosody import free_port  # noqa: E402
# The passwords tests/integration/rest.py sends (ADMIN, ALICE), plus "test" of the stream examples.
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass", "test": "testpass"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ejabberd: runs against a real ejabberd started by the tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.ejabberd)


@pytest.fixture(scope="session")
def ejabberd() -> Iterator[EjabberdServer]:
    # Not under tmp_path_factory: /tmp/pytest-of-root is mode 0700, and ejabberdctl (as root)
    # runs the server as the user "ejabberd", who must own and reach its work dir.
    workdir = tempfile.mkdtemp(prefix="tigase-rest-ejabberd-")
    server = EjabberdServer(workdir)
    try:
        server.start()
        for user, password in USERS.items():
            server.register(user, password)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def component_factory(ejabberd: EjabberdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Component]]:
    """``start(**sections)``: a component for the session's ejabberd; ``sections`` update the
    default config section by section (e.g. ``xmpp={"iq_timeout": 1}``)."""
    started: list[Component] = []

    def start(**sections: Mapping[str, Any]) -> Component:
        workdir = tmp_path_factory.mktemp("component")
        config = merge_sections({
            "xmpp": ejabberd.component_config(),
            "http": {"host": "127.0.0.1", "port": free_port(), "scripts_dir": str(SCRIPTS_DIR)},
            # No [auth] admins: who is an admin is what ejabberd offers each caller's session.
            "auth": {"api_keys": ["test-key"]},
            "storage": {"data_dir": str(workdir / "data")},
            "log": {"level": "debug"},
        }, sections)
        component = launch(workdir, config)
        started.append(component)
        # /rest/health is 200 only once the component is also linked to ejabberd.
        wait_until_200(component, f"{component.url}/rest/health?api-key=test-key")
        return component

    yield start
    stop_all(started)


@pytest.fixture
def component(component_factory: Callable[..., Component]) -> Component:
    return component_factory()


@pytest.fixture
async def xmpp_client(ejabberd: EjabberdServer) -> AsyncIterator[Callable[..., Any]]:
    """``await xmpp_client("alice", resource="test", presence=True)``: a logged-in client."""
    clients: list[XmppClient] = []

    async def connect(localpart: str, **kwargs: Any) -> XmppClient:
        client = await connect_client(
            f"{localpart}@{ejabberd.domain}", ejabberd.users[localpart], "127.0.0.1", ejabberd.c2s_port, **kwargs
        )
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.disconnect()
