"""The real tigase-rest process for tests: started from a config, waited for, stopped.

Used by tests/integration/conftest.py (for whichever server --xmpp-server chose) and by tests
that start components of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tools.prosody import http_status, write_toml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "scripts" / "rest"
START_TIMEOUT = 15


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


def merge_sections(base: dict[str, dict], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
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


def launch(workdir: Path, config: dict[str, dict], env: Mapping[str, str] | None = None) -> Component:
    """Write the config and start the process (``TIGASE_REST_*`` from the outer environment are
    never passed on, so a developer's shell cannot change test results)."""
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
    return Component(process, f"http://127.0.0.1:{config['http']['port']}", config_path, log_path, config)


def wait_until_200(component: Component, url: str) -> None:
    """Until ``url`` answers 200; the test fails (with the log) if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while (status := http_status(url)) != 200:
        if component.process.poll() is not None:
            pytest.fail(f"component exited with code {component.process.returncode} while starting. Log:\n{component.log_text()}")
        if time.monotonic() > deadline:
            component.process.kill()
            component.process.wait(5)
            pytest.fail(f"component: GET {url} not 200 within {START_TIMEOUT} s "
                        f"(last answer: {status or 'none'}). Log:\n{component.log_text()}")
        time.sleep(0.05)


def stop_all(started: list[Component]) -> None:
    """Stop them all even if one hangs, then report the hang."""
    failures = []
    for component in started:
        try:
            component.stop()
        except pytest.fail.Exception as e:
            failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures))
