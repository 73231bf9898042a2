"""Several instances on one port (README "Scaling out", ``[http] reuse_port``): two components
(http1.localhost, http2.localhost) on one Prosody listen on the same address with SO_REUSEPORT and
the kernel spreads new connections over them; when one stops, the other takes every new
connection. Without the key a second instance cannot start, and its log says which key to set."""

from __future__ import annotations

import collections
import shutil

import pytest

from components import launch, stop_all, wait_until_200
from rest import call
from tools.prosody import ProsodyServer, free_port

INSTANCES = ("http1.localhost", "http2.localhost")


@pytest.fixture
def prosody(tmp_path_factory):
    server = ProsodyServer(tmp_path_factory.mktemp("prosody-reuse"), component_jid=INSTANCES[0],
                           more_components=INSTANCES[1:])
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def instance_config(prosody: ProsodyServer, jid: str, port: int, workdir, reuse_port: bool) -> dict:
    return {
        "xmpp": {**prosody.component_config(), "component_jid": jid},
        "http": {"host": "127.0.0.1", "port": port, "reuse_port": reuse_port},
        "auth": {"api_keys": ["test-key"], "admins": ["admin@localhost"]},
        "storage": {"data_dir": str(workdir / "data")},
    }


async def served_by(url_holder, count: int) -> collections.Counter:
    """Which instance answered each of ``count`` requests, each on a new connection."""
    served: collections.Counter = collections.Counter()
    for _ in range(count):
        answer = await call(url_holder, "GET", "/rest/health", auth=None, headers={"Accept": "application/json"})
        assert answer.status == 200, answer.text
        served[answer.json()["health"]["component_jid"]] += 1
    return served


async def test_two_instances_share_one_port_and_the_survivor_takes_every_connection(prosody, tmp_path_factory):
    port = free_port()
    started = []
    try:
        for jid in INSTANCES:
            workdir = tmp_path_factory.mktemp(jid.split(".")[0])
            started.append(launch(workdir, instance_config(prosody, jid, port, workdir, reuse_port=True)))
        for component in started:
            wait_until_200(component, f"{component.url}/rest/")
        served = await served_by(started[0], 40)
        print(f"\n40 GET /rest/health on one port: {dict(served)}")
        assert set(served) == set(INSTANCES), served

        started[1].stop()  # SIGTERM: its socket closes, the kernel stops handing it connections
        assert await served_by(started[0], 10) == {INSTANCES[0]: 10}
    finally:
        stop_all(started)


async def test_without_reuse_port_a_second_instance_says_which_key_to_set(prosody, tmp_path_factory):
    port = free_port()
    first_dir, second_dir = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    first = launch(first_dir, instance_config(prosody, INSTANCES[0], port, first_dir, reuse_port=False))
    second = None
    try:
        wait_until_200(first, f"{first.url}/rest/")
        second = launch(second_dir, instance_config(prosody, INSTANCES[1], port, second_dir, reuse_port=False))
        assert second.process.wait(30) == 1
        assert f"Cannot listen on 127.0.0.1:{port}" in second.log_text()
        assert "[http] reuse_port = true" in second.log_text()
        assert (await served_by(first, 3)) == {INSTANCES[0]: 3}  # the first one is untouched
    finally:
        stop_all([c for c in (first, second) if c is not None and c.process.poll() is None])
