"""Step E of ``make bench``, "the peer" (issue 16): ejabberd's own REST API beside the component.

One throwaway ejabberd (``tools.ejabberd``, ``http_api=True``: ``/api: mod_http_api``,
``mod_admin_extra``, plain password storage, ``admin@localhost`` in the acl ``admin`` and the
``api_permissions`` rule "admin access": that acl may run every command but start/stop). On it, in
BENCH_ROUNDS interleaved rounds (the order flips every round, as in ``ratio_rounds``), BENCH_SECONDS
per run, ``wrk -t1 -c16 --latency``:

- (a) ``POST /api/send_message`` with the JSON body ``SEND_MESSAGE``, HTTP Basic auth as admin@localhost;
- (b) the component's ``POST /rest/stream/`` with the same chat message as XML (scenario 1 of the
  bench: Basic auth admin + ``Api-Key``), the component connected to the same ejabberd.

bob is online at bob@localhost/bench on that ejabberd (the bench's raw receiver, PLAIN over the
TLS-less c2s) and counts what he receives, so every accepted request is checked for delivery on
both sides. Before the runs the step checks that mod_http_api refuses a non-admin, a wrong password
and no credentials. CPU per request: the component (user/sys), ejabberd (beam.smp and its
children, user/sys) and wrk, from /proc like the other steps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import aiohttp

from bench.run import ADMIN_AUTH, CONCURRENCY, DOMAIN, MSG_BODY, RATIO_ROUNDS, USERS, basic, mod_rest_note, wrk_script
from bench.scale import all_listening
from tools.ejabberd import EjabberdServer
from tools.prosody import free_port

SEND_MESSAGE = {"type": "chat", "from": f"admin@{DOMAIN}", "to": f"bob@{DOMAIN}/bench", "subject": "",
                "body": "bench message"}
SIDES = (("api", "mod_http_api POST /api/send_message"), ("rest", "component POST /rest/stream/"),
         ("rest2", "2 components, one port: /rest/stream/"))
PAIR = ("http1.localhost", "http2.localhost")  # rest2: two instances with [http] reuse_port


class PeerError(RuntimeError):
    pass


def ejabberd_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "ejabberd"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unknown"


async def check_auth(url: str) -> dict[str, int]:
    """The status of send_message for the admin, a non-admin, a wrong password and no credentials;
    PeerError unless only the admin gets 200."""
    tries = {"admin": ADMIN_AUTH, "non-admin (alice)": basic("alice", USERS["alice"]),
             "admin, wrong password": basic("admin", "wrong"), "no credentials": None}
    out = {}
    async with aiohttp.ClientSession(trust_env=False) as http:
        for who, auth in tries.items():
            headers = {"Authorization": auth} if auth else {}
            async with http.post(url, json=SEND_MESSAGE, headers=headers) as r:
                out[who] = r.status
                await r.read()
    if out["admin"] != 200 or any(status == 200 for who, status in out.items() if who != "admin"):
        raise PeerError(f"mod_http_api's permissions are not as configured: {out}")
    return out


def per_request(run: dict) -> dict:
    """CPU µs per answered request: component and ejabberd as [user, sys], wrk as a total."""
    ok = run["ok"] or 1
    us = lambda seconds: round(1e6 * seconds / ok)  # noqa: E731
    splits = run["cpu_split_s"]
    out = {k: [us(t) for t in splits[k]] for k in ("component", "ejabberd") if k in splits}
    if "component2" in splits:  # rest2: both instances together
        out["component"] = [us(a + b) for a, b in zip(splits["component"], splits["component2"])]
    out["wrk"] = us(run["cpu_s"]["load generator"])
    return out


def row(run: dict) -> dict:
    return {"rate": round(run["rate"]), "p50_ms": round(run["p50_ms"], 2), "p99_ms": round(run["p99_ms"], 2),
            "ok": run["ok"], "delivered": run["delivered"], "lost": run["lost"], "errors": run["errors"],
            "cpu_us_per_req": per_request(run), "cpu_pct": run["cpu_pct"]}


async def step_peer(bench, scripts_dir: Path) -> None:
    rounds = max(1, RATIO_ROUNDS)
    print(f"[E] the peer: ejabberd's mod_http_api POST /api/send_message vs the component's POST /rest/stream/ "
          f"on the same ejabberd, {rounds} interleaved rounds of {bench.seconds} s, c{CONCURRENCY}", flush=True)
    note = mod_rest_note("its REST API", "Prosody's own REST API could not be measured beside ejabberd's mod_http_api")
    print(f"  {note}", flush=True)
    res: dict = {"ejabberd": ejabberd_version(), "seconds": bench.seconds, "concurrency": CONCURRENCY,
                 "body": SEND_MESSAGE, "note": note, "rounds": [], "git": bench.results.get("git"),
                 "config": {"ejabberd": "tools.ejabberd http_api=True: /api: mod_http_api, mod_admin_extra, "
                                        "auth_password_format plain, TLS-less c2s, loglevel warning",
                            "api_permissions": "'admin access': who access allow acl admin, what * but start/stop",
                            "api": "POST /api/send_message, JSON, HTTP Basic admin@localhost",
                            "rest": "POST /rest/stream/ message XML, HTTP Basic admin@localhost + Api-Key"}}
    bench.results["peer"] = res
    # Under /tmp: as root, ejabberdctl runs the server as the user ejabberd, who must reach the work dir.
    server = EjabberdServer(tempfile.mkdtemp(prefix="bench-ejabberd-"), http_api=True, log_level="warning",
                            erl_options=os.environ.get("BENCH_ERL_OPTIONS", ""), more_components=PAIR)
    pair: list = []  # the rest2 instances
    group = None
    bob = pump = None
    servers_before = bench.server_pids
    try:
        await asyncio.to_thread(server.start)
        # ejabberdctl detaches beam.smp into the process group of a shell that is gone: the group,
        # not the pid, is what the bench's last-resort killpg must name.
        group = os.getpgid(server.pid)
        bench.children[group] = server
        for user, password in USERS.items():
            await asyncio.to_thread(server.register, user, password)
        url = server.api_url + "/send_message"
        res["auth"] = await check_auth(url)
        print("  mod_http_api send_message: " + ", ".join(f"{k} {v}" for k, v in res["auth"].items()), flush=True)
        bob, pump = await bench.connect_bob(server.c2s_port)
        shared = free_port()
        for jid in PAIR:  # side rest2: two more instances on one port ([http] reuse_port)
            await bench.start_component(f"E-{jid.split('.')[0]}", scripts_dir, server=server, extra={
                "http": {"port": shared, "reuse_port": True}, "xmpp": {"component_jid": jid}})
            pair.append(bench.component)
        pair_url = f"http://127.0.0.1:{shared}"
        await all_listening(pair_url, PAIR)
        await bench.start_component("E", scripts_dir, server=server)
        single = bench.component
        bench.server_pids = {"ejabberd": server.pid}
        lua = wrk_script(bench.work / "lua" / "send_message.lua", "POST",
                         {"Authorization": ADMIN_AUTH, "Content-Type": "application/json"}, json.dumps(SEND_MESSAGE))

        async def run(side: str, name: str, label: str, seconds: int | None = None) -> dict:
            if side == "api":
                return await bench.rest(name, label, lua, "/send_message", seconds=seconds, messages=True,
                                        record=False, base=server.api_url)
            if side == "rest2":
                bench.component, bench.extra_pids = pair[0], {"component2": pair[1].pid}
                try:
                    return await bench.rest(name, label, bench.lua_msg, "/rest/stream/", seconds=seconds,
                                            messages=True, record=False, base=pair_url)
                finally:
                    bench.component, bench.extra_pids = single, {}
            return await bench.rest(name, label, bench.lua_msg, "/rest/stream/", seconds=seconds, messages=True,
                                    record=False)

        for side, label in SIDES:  # warm-up (not recorded): connections, caches, the admin's login
            await run(side, f"peer_warmup_{side}", f"warm-up {label} (not recorded)", seconds=2)
        for n in range(rounds):
            order = SIDES[::-1] if n % 2 else SIDES
            runs = {side: row(await run(side, f"peer_{side}_r{n}", f"round {n + 1}: {label}")) for side, label in order}
            runs["order"] = [side for side, _ in order]
            runs["ratio"] = runs["rest"]["rate"] / runs["api"]["rate"] if runs["api"]["rate"] else 0.0
            runs["ratio2"] = runs["rest2"]["rate"] / runs["api"]["rate"] if runs["api"]["rate"] else 0.0
            res["rounds"].append(runs)
        summarise(res)
        for side, _ in SIDES:
            lost = sum(r[side]["lost"] for r in res["rounds"])
            if lost:
                print(f"  warning: {side}: {lost} accepted messages never reached bob", flush=True)
    finally:
        bench.server_pids = servers_before
        bench.stop_component()
        for proc in pair:
            bench.component = proc
            bench.stop_component()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(Exception):
                bob.close()
        await asyncio.to_thread(server.stop)
        if group is not None:
            bench.children.pop(group, None)
        with contextlib.suppress(OSError):
            shutil.copy(server.log_path, bench.logs / "ejabberd-peer.log")
        shutil.rmtree(server.workdir, ignore_errors=True)


def summarise(res: dict) -> None:
    rounds = res["rounds"]
    res["median"] = {"ratio": statistics.median(r["ratio"] for r in rounds),
                     "ratio2": statistics.median(r["ratio2"] for r in rounds)}
    for side, _ in SIDES:
        res["median"][side] = {
            "rate": round(statistics.median(r[side]["rate"] for r in rounds)),
            "p99_ms": round(statistics.median(r[side]["p99_ms"] for r in rounds), 2),
            "cpu_us_per_req": {k: [round(statistics.median(r[side]["cpu_us_per_req"][k][i] for r in rounds))
                                   for i in range(2)] for k in ("component", "ejabberd")}
            | {"wrk": round(statistics.median(r[side]["cpu_us_per_req"]["wrk"] for r in rounds))},
        }


def _cpu(per: dict) -> str:
    c, e = per["component"], per["ejabberd"]
    # ejabberd's share of the server-side CPU (component + ejabberd); on the mod_http_api side the
    # component is idle (connected, nothing to do), so the share is only shown beside it.
    share = f", ejabberd's share {100 * sum(e) / (sum(c) + sum(e)):.0f}%" if sum(c) else ""
    return f"component {sum(c)} ({c[0]}/{c[1]}), ejabberd {sum(e)} ({e[0]}/{e[1]}), wrk {per['wrk']}{share}"


def report(res: dict) -> str:
    lines = ["", f"The peer (issue 16): ejabberd {res['ejabberd']} mod_http_api vs the component on the same ejabberd, "
             f"{res['seconds']} s per run, c{res['concurrency']}"]
    if "auth" in res:
        lines.append("  mod_http_api send_message: " + ", ".join(f"{k} {v}" for k, v in res["auth"].items()))
    head = f"  {'round':<7}{'side':<38}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'delivered':>16}{'others%':>9}  CPU us/req (user/sys)"
    lines += [head, "  " + "-" * (len(head) + 40)]
    for n, r in enumerate(res["rounds"], 1):
        for side in r["order"]:
            s = r[side]
            label = dict(SIDES)[side]
            lines.append(f"  {n:<7}{label:<38}{s['rate']:>8}{s['p50_ms']:>8.2f}{s['p99_ms']:>8.2f}"
                         f"{str(s['delivered']) + '/' + str(s['ok']):>16}{s['cpu_pct'].get('others', 0):>9}  "
                         + _cpu(s["cpu_us_per_req"]))
    if res.get("median"):
        m = res["median"]
        lines.append("  REST/mod_http_api req/s per round: " + ", ".join(
            f"{r['rest']['rate']}/{r['api']['rate']} = {r['ratio']:.0%}" for r in res["rounds"])
            + f"; median {m['ratio']:.0%}")
        lines.append("  2 components on one port / mod_http_api req/s per round: " + ", ".join(
            f"{r['rest2']['rate']}/{r['api']['rate']} = {r['ratio2']:.0%}" for r in res["rounds"])
            + f"; median {m['ratio2']:.0%}")
        for side, label in SIDES:
            lines.append(f"  median {label}: {m[side]['rate']} req/s, p99 {m[side]['p99_ms']} ms, CPU us/req "
                         + _cpu(m[side]["cpu_us_per_req"]))
    lines.append(f"  {res['note']}")
    return "\n".join(lines)
