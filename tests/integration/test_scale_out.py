"""Past one core and one machine (README "Scaling out"): two instances, each its own component
(http1.localhost, http2.localhost) on one Prosody, sharing PostgreSQL, behind nginx; all on
loopback, all started here (PostgreSQL as the unprivileged ``postgres`` user, nginx as ``www-data``
when run as root; installed with apt when missing, never skipped).

- requests through nginx reach both instances;
- /rest/stream answers the same whichever instance serves; a from-less message names its sender;
- a status set through one instance is re-announced by the other and withdrawn through it;
- SIGKILL of one instance under load: every GET still answers 200 (nginx retries it on the other),
  every POST answers 200 or 502, and every 200 was delivered: nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import shutil
import signal
import time
from types import SimpleNamespace

import aiohttp
import asyncpg
import pytest

from clients import XmppClient, connect_client
from components import Component, launch, stop_all, wait_until_200
from rest import ADMIN, KEY, call
from test_user_status import befriend, no_presence_from, presence_from
from tools.nginx import NginxServer
from tools.postgres import PostgresServer
from tools.prosody import ProsodyServer, free_port

INSTANCES = ("http1.localhost", "http2.localhost")
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
EXTERNAL = "alice@localhost/tigase-external"
STATUS_URL = "/rest/user/alice@localhost/status"


class Deployment:
    def __init__(self, prosody: ProsodyServer, postgres: PostgresServer, nginx: NginxServer,
                 instances: dict[str, Component]):
        self.prosody = prosody
        self.postgres = postgres
        self.nginx = nginx
        self.instances = instances
        self.balancer = SimpleNamespace(url=nginx.url)  # what rest.call needs

    async def client(self, user: str, resource: str = "test") -> XmppClient:
        return await connect_client(f"{user}@localhost", USERS[user], "127.0.0.1", self.prosody.c2s_port,
                                    resource=resource)

    async def rows(self) -> list[tuple]:
        connection = await asyncpg.connect(self.postgres.url)
        try:
            return [tuple(r) for r in await connection.fetch(
                "SELECT jid, resource, show, instance FROM tigase_rest_statuses ORDER BY jid, resource")]
        finally:
            await connection.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    postgres = PostgresServer()
    prosody = ProsodyServer(tmp_path_factory.mktemp("prosody-scale"), component_jid=INSTANCES[0],
                            more_components=INSTANCES[1:])
    started: list[Component] = []
    nginx = None
    try:
        postgres.start()
        prosody.start()
        for user, password in USERS.items():
            prosody.register(user, password)
        instances = {}
        for jid in INSTANCES:
            workdir = tmp_path_factory.mktemp(jid.split(".")[0])
            config = {
                "xmpp": {**prosody.component_config(), "component_jid": jid, "deployment": list(INSTANCES)},
                "http": {"host": "127.0.0.1", "port": free_port(), "trusted_proxies": ["127.0.0.1"]},
                "auth": {"api_keys": ["test-key"], "admins": ["admin@localhost"]},
                "storage": {"url": postgres.url, "data_dir": str(workdir / "data")},
                "log": {"level": "debug"},
            }
            component = launch(workdir, config)
            started.append(component)
            instances[jid] = component
        for component in started:
            wait_until_200(component, f"{component.url}/rest/")
        nginx = NginxServer([c.url.removeprefix("http://") for c in started])
        nginx.start()
        yield Deployment(prosody, postgres, nginx, instances)
    finally:
        if nginx is not None:
            nginx.cleanup()
        stop_all(started)
        for component in started:
            assert postgres.password not in component.log_text(), "the database password reached the log"
        prosody.stop()
        shutil.rmtree(prosody.workdir, ignore_errors=True)
        postgres.cleanup()


async def test_requests_spread_over_both_instances(deployment):
    served = collections.Counter()
    for _ in range(20):
        answer = await call(deployment.balancer, "GET", "/rest/health", auth=None,
                            headers={"Accept": "application/json"})
        assert answer.status == 200, answer.text
        served[answer.json()["health"]["component_jid"]] += 1
    print(f"\n20 GET /rest/health through nginx: {dict(served)}")
    assert set(served) == set(INSTANCES), served


async def test_stream_answers_are_the_same_whichever_instance_serves(deployment):
    bob = await deployment.client("bob", "stream")
    try:
        answers = []
        for jid in INSTANCES:
            answer = await call(deployment.instances[jid], "POST", "/rest/stream/bob@localhost/stream",
                                body="hello from the API", headers={"Content-Type": "text/plain"})
            answers.append((answer.status, answer.text, answer.headers.get("Content-Type")))
        assert answers[0] == answers[1] and answers[0][0] == 200, answers
        senders = set()
        for _ in INSTANCES:
            message = await bob.next_message()
            assert message["body"] == "hello from the API"
            senders.add(str(message["from"]))
        assert senders == set(INSTANCES)  # only the from says which instance sent it
    finally:
        await bob.disconnect()


async def test_an_iq_from_a_bot_of_one_instance_answers_through_the_other(deployment):
    """The reply goes to bot@http1.localhost, that is to the first instance, which forwards it to the
    second (its wire id names the sender): the answer is the same whichever instance serves."""
    ping = {"kind": "iq", "type": "get", "id": "p1", "to": "localhost", "from": f"bot@{INSTANCES[0]}", "ping": True}
    answers = []
    for jid in INSTANCES:
        answer = await call(deployment.instances[jid], "POST", "/rest/stream/", body=ping)
        assert answer.status == 200, (jid, answer.text)
        answers.append(answer.json())
    assert answers[0] == answers[1] and answers[0]["type"] == "result", answers


async def test_a_status_set_through_one_instance_is_withdrawn_through_the_other(deployment):
    one, other = (deployment.instances[jid] for jid in INSTANCES)
    alice = await deployment.client("alice")
    bob = await deployment.client("bob")
    try:
        await befriend(alice, bob)
        answer = await call(one, "POST", STATUS_URL, auth=None, body={"show": "dnd", "status": "In a meeting"})
        assert answer.status == 200 and answer.json()["status"]["success"] is True, answer.text
        assert (await presence_from(bob, EXTERNAL))["type"] == "dnd"
        assert await deployment.rows() == [("alice@localhost", "tigase-external", "dnd", INSTANCES[0])]

        # The other instance learnt it (NOTIFY, then alice's roster): a new session of bob gets the
        # status from both instances: the same presence twice, which changes nothing bob shows.
        await asyncio.sleep(1)
        await bob.disconnect()
        bob = await deployment.client("bob", "again")
        copies = []
        while True:
            try:
                copies.append(await presence_from(bob, EXTERNAL, timeout=2))
            except AssertionError:
                break
        print(f"\nbob's new session got {len(copies)} copies of alice's external status")
        assert len(copies) == len(INSTANCES) and all(p["type"] == "dnd" for p in copies), copies

        answer = await call(other, "POST", STATUS_URL, auth=None, body={"available": False})
        assert answer.status == 200 and answer.json()["status"]["success"] is True, answer.text
        assert (await presence_from(bob, EXTERNAL))["type"] == "unavailable"
        assert await deployment.rows() == []

        # Neither instance sends it again: the first one learnt of the withdrawal too.
        await asyncio.sleep(1)
        await bob.disconnect()
        bob = await deployment.client("bob", "later")
        await no_presence_from(bob, EXTERNAL, quiet=2)
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_killing_an_instance_loses_no_accepted_request(deployment):
    """SIGKILL of http1 while GETs and POSTs flow through nginx: every GET answers 200 (a GET that
    failed on http1 is retried on http2); a POST answers 200 or 502 (nginx never sends a POST twice),
    and every POST answered 200 reached bob."""
    bob = await deployment.client("bob", "count")
    victim = deployment.instances[INSTANCES[0]]
    gets: collections.Counter = collections.Counter()
    posts: dict[str, int] = {}
    numbers = itertools.count()
    deadline = time.monotonic() + 4

    async def worker(http: aiohttp.ClientSession, kind: str) -> None:
        while time.monotonic() < deadline:
            if kind == "get":
                async with http.get(deployment.nginx.url + "/rest/ping/localhost", headers={**KEY, **ADMIN}) as r:
                    await r.read()
                    gets[r.status] += 1
            else:
                body = f"message {next(numbers)}"
                async with http.post(deployment.nginx.url + "/rest/stream/bob@localhost/count", data=body,
                                     headers={**KEY, **ADMIN, "Content-Type": "text/plain"}) as r:
                    await r.read()
                    posts[body] = r.status

    async def kill_soon() -> None:
        await asyncio.sleep(1.5)
        victim.process.send_signal(signal.SIGKILL)

    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(kill_soon(), *(worker(http, kind) for kind in ("get", "post") * 4))
        victim.process.wait(5)
        outcomes = collections.Counter(posts.values())
        print(f"\nkilled {INSTANCES[0]} under load: GET {dict(gets)}, POST {dict(outcomes)}")
        assert set(gets) == {200}, gets
        assert set(outcomes) <= {200, 502}, outcomes
        accepted = {body for body, status in posts.items() if status == 200}
        received: set[str] = set()
        give_up = time.monotonic() + 10
        while not accepted <= received and time.monotonic() < give_up:
            try:
                received.add((await bob.next_message(timeout=1))["body"])
            except asyncio.TimeoutError:
                pass
        assert accepted <= received, f"accepted but never delivered: {sorted(accepted - received)[:10]}"
    finally:
        await bob.disconnect()
