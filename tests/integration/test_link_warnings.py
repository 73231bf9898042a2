"""A link that cannot come up is said plainly: one warning at the default level, at the first failed
attempt, naming host, port and the likely fix (connection refused, the c2s port instead of the
component port, a name that does not resolve)."""

from __future__ import annotations

import time

import pytest

from tools.prosody import free_port

WAIT = 4.0  # well before the 10 s handshake timeout: the refusal itself is reported


def first_warning(component, needle: str, timeout: float = WAIT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [l for l in component.log_text().splitlines() if " WARNING " in l and "Cannot connect component" in l]
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"no link warning within {timeout} s. Log:\n{component.log_text()[-3000:]}")


@pytest.mark.parametrize("host, port, needle", [
    ("127.0.0.1", "free", "connection refused"),
    ("no-such-host.invalid", 5347, "does not resolve (DNS). Check xmpp.host"),
])
def test_refused_and_dns_failures_are_one_warning_at_the_first_attempt(component_factory, host, port, needle):
    port = free_port() if port == "free" else port
    component = component_factory(wait=False, xmpp={"host": host, "port": port}, log={"level": "info"})
    line = first_warning(component, needle)
    assert needle in line and f"{host}:{port}" in line, line
    time.sleep(2)  # later attempts: no second warning of the same kind
    assert component.log_text().count("Cannot connect component") == 1, component.log_text()


def test_the_c2s_port_instead_of_the_component_port_names_xmpp_port(component_factory, prosody):
    component = component_factory(wait=False, xmpp={"port": prosody.c2s_port}, log={"level": "info"})
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        text = component.log_text()
        hints = [l for l in text.splitlines() if "check xmpp.port" in l.lower() and f":{prosody.c2s_port}" in l]
        if hints:
            assert " WARNING " in hints[0] or " ERROR " in hints[0], hints[0]
            return
        time.sleep(0.1)
    raise AssertionError(f"no hint naming xmpp.port. Log:\n{component.log_text()[-3000:]}")
