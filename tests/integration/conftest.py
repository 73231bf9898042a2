"""Fixtures for tests against a real Prosody that the tests start themselves.

``prosody``: one server for the session, with admin/alice/bob registered.
``component_factory`` / ``component``: the real tigase-rest process, configured for it.
``xmpp_client``: real slixmpp clients, disconnected after the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clients import XmppClient, connect_client
from tigase_rest.devtools.prosody import ProsodyServer, free_port, http_status, write_toml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "scripts" / "rest"
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
COMPONENT_START_TIMEOUT = 15


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


class Component:
    """A running ``python -m tigase_rest`` process."""

    def __init__(self, process: subprocess.Popen, url: str, config_path: Path, log_path: Path, config: dict) -> None:
        self.process = process
        self.url = url  # e.g. http://127.0.0.1:PORT (the context path, /rest, is not included)
        self.config_path = config_path
        self.log_path = log_path
        self.config = config

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and return the exit code; a process that does not exit in time is killed
        and the test fails (a shutdown that hangs is a bug)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                pytest.fail(f"component still running {timeout} s after signal {sig}; killed. Log:\n{self.log_text()}")
        return self.process.returncode


def _merge(base: dict[str, dict], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """Section-wise update; a value of None removes the key."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in overrides.items():
        section = merged.setdefault(name, {})
        for key, value in values.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return merged


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
        workdir = tmp_path_factory.mktemp("component")
        port = free_port()
        config = _merge(
            {
                "xmpp": prosody.component_config(),
                "http": {"host": "127.0.0.1", "port": port, "scripts_dir": str(SCRIPTS_DIR)},
                "auth": {"api_keys": ["test-key"], "admins": ["admin@localhost"]},
                "log": {"level": "debug"},
            },
            sections,
        )
        config_path = workdir / "config.toml"
        write_toml(config_path, config)
        log_path = workdir / "component.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("TIGASE_REST_")}
        child_env.update(env or {})
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tigase_rest", "--config", str(config_path)],
                cwd=REPO,  # so `-m tigase_rest` is this checkout even without an installed package
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        http = config["http"]
        component = Component(process, f"http://127.0.0.1:{http['port']}", config_path, log_path, config)
        started.append(component)
        if wait:
            _wait_until_serving(component, f"{component.url}{http.get('context_path', '/rest').rstrip('/')}/")
        return component

    yield start
    # Stop them all even if one hangs, then report the hang.
    failures = []
    for component in started:
        try:
            component.stop()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures))


def _wait_until_serving(component: Component, index_url: str) -> None:
    deadline = time.monotonic() + COMPONENT_START_TIMEOUT
    while (status := http_status(index_url)) != 200:
        if component.process.poll() is not None:
            pytest.fail(f"component exited with code {component.process.returncode} while starting. Log:\n{component.log_text()}")
        if time.monotonic() > deadline:
            component.process.kill()
            component.process.wait(5)
            pytest.fail(
                f"component: GET {index_url} not 200 within {COMPONENT_START_TIMEOUT} s "
                f"(last answer: {status or 'none'}). Log:\n{component.log_text()}"
            )
        time.sleep(0.05)


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
