"""Fixtures for the optional tests against a real ejabberd (``make test-ejabberd``).

Outside ``tests/`` on purpose: ``testpaths = tests`` keeps them out of ``make test`` (ejabberd is a
large package and starts in 2-3 s), and nothing here is ever skipped: a missing or broken server
is an error.

``ejabberd``: one server for the session, with admin/alice/bob/test registered.
``component_factory`` / ``component``: the real tigase-rest process, configured for it.
``xmpp_client``: real slixmpp clients, disconnected after the test.

The HTTP and XMPP client helpers are the integration tests' own (``tests/integration/rest.py``
and ``clients.py``, put on ``sys.path`` here), so both servers are driven by the same code. The
fixtures are a small copy of ``tests/integration/conftest.py`` (a conftest cannot be imported as a
module), with ejabberd in place of Prosody.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from clients import XmppClient, connect_client  # noqa: E402  (tests/integration)
from tigase_rest.devtools.ejabberd import EjabberdServer  # noqa: E402
from tigase_rest.devtools.prosody import free_port, http_status, write_toml  # noqa: E402

SCRIPTS_DIR = REPO / "scripts" / "rest"
# The passwords tests/integration/rest.py sends (ADMIN, ALICE), plus "test" of the stream examples.
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass", "test": "testpass"}
COMPONENT_START_TIMEOUT = 15


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


class Component:
    """A running ``python -m tigase_rest``."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, config: dict) -> None:
        self.process = process
        self.url = url  # http://127.0.0.1:PORT, without the context path
        self.log_path = log_path
        self.config = config

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                pytest.fail(f"component still running {timeout} s after signal {sig}; killed. Log:\n{self.log_text()}")
        return self.process.returncode


@pytest.fixture
def component_factory(ejabberd: EjabberdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Component]]:
    """``start(**sections)``: a component for the session's ejabberd; ``sections`` update the
    default config section by section (e.g. ``xmpp={"iq_timeout": 1}``)."""
    started: list[Component] = []

    def start(**sections: Mapping[str, Any]) -> Component:
        workdir = tmp_path_factory.mktemp("component")
        config: dict[str, dict] = {
            "xmpp": ejabberd.component_config(),
            "http": {"host": "127.0.0.1", "port": free_port(), "scripts_dir": str(SCRIPTS_DIR)},
            # No [auth] admins: who is an admin is what ejabberd offers each caller's session.
            "auth": {"api_keys": ["test-key"]},
            "storage": {"data_dir": str(workdir / "data")},
            "log": {"level": "debug"},
        }
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        write_toml(workdir / "config.toml", config)
        log_path = workdir / "component.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIGASE_REST_")}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tigase_rest", "--config", str(workdir / "config.toml")],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        component = Component(process, f"http://127.0.0.1:{config['http']['port']}", log_path, config)
        started.append(component)
        _wait_until_linked(component)
        return component

    yield start
    failures = []
    for component in started:
        try:
            component.stop()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures))


def _wait_until_linked(component: Component) -> None:
    """Until GET /rest/health is 200: serving HTTP and linked to ejabberd as a component."""
    url = f"{component.url}/rest/health?api-key=test-key"
    deadline = time.monotonic() + COMPONENT_START_TIMEOUT
    while (status := http_status(url)) != 200:
        if component.process.poll() is not None:
            pytest.fail(f"component exited with code {component.process.returncode} while starting. Log:\n{component.log_text()}")
        if time.monotonic() > deadline:
            component.process.kill()
            component.process.wait(5)
            pytest.fail(f"component: GET {url} not 200 within {COMPONENT_START_TIMEOUT} s "
                        f"(last answer: {status or 'none'}). Log:\n{component.log_text()}")
        time.sleep(0.05)


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
