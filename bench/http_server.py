"""aiohttp's low-level ``web.Server`` against a ``web.Application`` (issue 10, item 7), with wrk.

    python -m bench.http_server        # alone: BENCH_HTTP_SECONDS=2 per run, 2 x BENCH_ROUNDS (3) rounds

The real ``RestServer`` on the real ``scripts/rest`` tree, with the XMPP side faked as
tests/http/conftest.py fakes it (a link that drops what it is given, a pool that knows ``admin``),
is served two ways, each in its own child process:

- ``lowlevel``: ``web.Server(rest.handle, **rest.server_kwargs())`` + ``ServerRunner``, as app.py does;
- ``app``: ``web.Application(client_max_size=...)`` with one catch-all route to ``rest.handle`` +
  ``AppRunner`` (what the metrics/logging work wants: middlewares, ``AppKey``, ``cleanup_ctx``).

Both children run for the whole measurement. In each round every (server, path) pair gets one
``wrk -t1 -c16`` run; the order of the servers flips every round (2 x BENCH_ROUNDS rounds, so
BENCH_ROUNDS=3 gives each order three times). Paths: ``POST /rest/stream/`` with
a chat message (Basic auth + Api-Key; the fake link drops the stanza, so memory stays flat) and
``GET /rest/health`` (Api-Key only). Per run: req/s, p50/p99, and the server's CPU per request from
/proc/<pid>/stat (utime+stime). The difference app - lowlevel is taken per round (the two runs of a
round are back to back, so they share the machine's mood), and its median is set against the
component's CPU per message and per IQ of the main bench (this run's figures inside ``make bench``,
BENCHMARKS.md's otherwise). The low-level server stays only if it saves more than 5% of a message.
Also reported: the difference as a share of the low-level server's own cost for the same request in
the same rounds, which a slow or busy machine cannot skew (both sides slow down together); it is an
upper bound of the share of a real message, which also pays for the link to the XMPP server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import (
    ADMIN_AUTH, API_KEY, DOMAIN, MSG_BODY, REPO, SCRIPTS, USERS, BenchError, children_cpu, cpu_split, machine_cpu,
    self_cpu, wrk_script,
)

MODES = ("lowlevel", "app")
MODE_LABELS = {"lowlevel": "web.Server (low-level)", "app": "web.Application"}
CONCURRENCY = 16
THRESHOLD_PCT = 5.0
# The component's CPU per request in the main bench (BENCHMARKS.md, "This run", commit 741c3a2):
# used when this module runs alone; inside `make bench` the run's own figures replace them.
REFERENCE_US = {"message": 117, "IQ": 132}
REFERENCE_SOURCE = "BENCHMARKS.md (commit 741c3a2)"
PATHS = {
    "stream": {"label": "POST /rest/stream/ (message)", "path": "/rest/stream/"},
    "health": {"label": "GET /rest/health", "path": "/rest/health"},
}


# --- the child: one server -------------------------------------------------------------------


class DropLink:
    """The component link of tests/http/fakes.py's FakeLink, but it keeps nothing it is given."""

    connected = True

    def send(self, stanza) -> None:
        pass

    async def request(self, iq, timeout=None):
        from tigase_rest import errors
        raise errors.HttpError(504, "no XMPP server in this benchmark")


class BenchPool:
    """FakePool's login: ``admin`` with his password is an admin, anyone else is refused."""

    async def authenticate(self, jid, password: str, remote: str):
        from tigase_rest import errors
        from tigase_rest.errors import challenge
        from tigase_rest.xmpp.sessions import Caller

        if str(jid) == f"admin@{DOMAIN}" and password == USERS["admin"]:
            return Caller(str(jid), True)
        raise errors.HttpError(401, f"Invalid credentials for {jid}", headers=challenge())


def build_rest(data_dir: Path, link=None, pool=None):
    """The parts wired as tests/http/conftest.py (and app.serve) wire them; ``link`` and ``pool``
    replace the fakes (bench.inproc gives the real IqTracker and CallerPool)."""
    from tigase_rest.config import from_dict
    from tigase_rest.features.accounts.service import Accounts
    from tigase_rest.features.avatar.service import Avatars
    from tigase_rest.features.bosh import BoshPrebinding
    from tigase_rest.features.presence.service import ExternalStatuses
    from tigase_rest.features.presence.store import SqliteStatusStore
    from tigase_rest.http.auth import ApiKeyChecker
    from tigase_rest.http.server import Current, RestServer
    from tigase_rest.loader import routes_for
    from tigase_rest.service import Parts
    from tigase_rest.xmpp.privilege import PrivilegeTracker

    config = from_dict({
        "xmpp": {"secret": "s3cret", "component_jid": f"rest.{DOMAIN}", "domain": DOMAIN, "iq_timeout": 5},
        "http": {"scripts_dir": str(SCRIPTS)},
        "auth": {"api_keys": [API_KEY], "admins_from_server": False},
        "storage": {"data_dir": str(data_dir)},
    }, {}, base_dir=REPO)
    link, pool = link or DropLink(), pool or BenchPool()
    privileges = PrivilegeTracker(link, config.xmpp.domain)
    parts = Parts(
        link=link, pool=pool, privileges=privileges,  # type: ignore[arg-type]
        statuses=ExternalStatuses(link, config.xmpp.domain, privileges, SqliteStatusStore(data_dir / "statuses.db")),
        avatars=Avatars(link, privileges), bosh=BoshPrebinding(config.xmpp), accounts=Accounts(),
        health=lambda: {"xmpp_link": "up"}, stopping=asyncio.Event())
    current = Current(config, routes_for(config), ApiKeyChecker(config.auth))
    return config, RestServer(lambda: current, pool.authenticate, parts)


async def serve(mode: str) -> None:
    """One server on 127.0.0.1 (a free port), until SIGTERM; prints ``READY <port>`` once listening."""
    from aiohttp import web

    from tigase_rest.http.server import AccessLogger

    logging.basicConfig(level=logging.WARNING)  # as the main bench's component: no access log lines
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        config, rest = build_rest(Path(tmp))
        if mode == "lowlevel":
            runner = web.ServerRunner(web.Server(rest.handle, **rest.server_kwargs()), handle_signals=False)
        else:
            app = web.Application(client_max_size=config.http.max_body_bytes)
            app.router.add_route("*", "/{tail:.*}", rest.handle)
            runner = web.AppRunner(app, handle_signals=False, access_log_class=AccessLogger)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            print(f"READY {port}", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()


# --- the parent: load and measure --------------------------------------------------------------


class Servers:
    """Both children, each its own session, killed by PID (also on failure or Ctrl-C)."""

    def __init__(self, logs: Path, registry: dict | None = None):
        self.logs = logs
        self.registry = registry if registry is not None else {}
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.ports: dict[str, int] = {}

    async def start(self, mode: str) -> None:
        err = open(self.logs / f"http-server-{mode}.log", "wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.http_server", "--serve", mode, cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        err.close()
        self.procs[mode] = proc
        self.registry[proc.pid] = proc
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
        except asyncio.TimeoutError:
            raise BenchError(f"http server {mode} not ready within 30 s") from None
        m = re.match(rb"READY (\d+)", line)
        if not m:
            raise BenchError(f"http server {mode} did not start; see {self.logs / f'http-server-{mode}.log'}")
        self.ports[mode] = int(m.group(1))

    async def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            self.registry.pop(proc.pid, None)
        self.procs.clear()

    def kill(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self.registry.pop(proc.pid, None)


async def run_wrk(url: str, script: Path, seconds: int, log: Path, registry: dict) -> dict:
    cmd = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script), url]
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, start_new_session=True)
    registry[proc.pid] = proc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        registry.pop(proc.pid, None)
    text = out.decode(errors="replace")
    log.write_text(f"$ {' '.join(cmd)}\n{text}")
    m = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if proc.returncode != 0 or not m:
        raise BenchError(f"wrk failed; see {log}")
    return json.loads(m.group(1))


async def one_run(servers: Servers, mode: str, key: str, script: Path, seconds: int, log: Path,
                  registry: dict) -> dict:
    pid = servers.procs[mode].pid
    u0, s0 = cpu_split(pid)
    load0, self0, all0, t0 = children_cpu(), self_cpu(), machine_cpu(), time.monotonic()
    w = await run_wrk(f"http://127.0.0.1:{servers.ports[mode]}{PATHS[key]['path']}", script, seconds, log, registry)
    wall = time.monotonic() - t0
    u1, s1 = cpu_split(pid)
    user, system = u1 - u0, s1 - s0
    load, own = children_cpu() - load0, self_cpu() - self0
    others = max(0.0, machine_cpu() - all0 - user - system - load - own)
    ok = w["ok"]
    errors = w["bad"] + w["connect"] + w["read"] + w["write"] + w["timeout"]
    if not ok or errors:
        raise BenchError(f"{mode} {PATHS[key]['path']}: {ok} good answers, {errors} errors; see {log}")
    return {
        "mode": mode, "path": key, "rate": round(ok / (w["duration_us"] / 1e6)), "ok": ok,
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
        "us_per_req": round(1e6 * (user + system) / ok, 1),
        "user_us": round(1e6 * user / ok, 1), "sys_us": round(1e6 * system / ok, 1),
        "server_cpu_pct": round(100 * (user + system) / wall), "others_pct": round(100 * others / wall),
    }


def default_rounds() -> int:
    """2 x BENCH_ROUNDS (at least 2): each order of the two servers BENCH_ROUNDS times."""
    return 2 * max(1, int(os.environ.get("BENCH_ROUNDS", "3") or 1))


def median(values):
    return statistics.median(values) if values else None


def summarise(runs: list[dict], reference: dict[str, float], source: str) -> dict:
    rounds = sorted({r["round"] for r in runs})
    by = {(r["round"], r["mode"], r["path"]): r for r in runs}
    paths = {}
    for key in PATHS:
        row: dict = {}
        for mode in MODES:
            mine = [by[(n, mode, key)] for n in rounds if (n, mode, key) in by]
            row[mode] = {f: median([r[f] for r in mine]) for f in
                         ("rate", "p50_ms", "p99_ms", "us_per_req", "user_us", "sys_us")}
            row[mode]["us_range"] = [min(r["us_per_req"] for r in mine), max(r["us_per_req"] for r in mine)]
            row[mode]["rate_range"] = [min(r["rate"] for r in mine), max(r["rate"] for r in mine)]
        # Per round: the two servers ran back to back, so their difference is steadier than the medians'.
        diffs = [round(by[(n, "app", key)]["us_per_req"] - by[(n, "lowlevel", key)]["us_per_req"], 1)
                 for n in rounds if (n, "app", key) in by and (n, "lowlevel", key) in by]
        row["diff_us_rounds"] = diffs
        row["diff_us"] = median(diffs)
        row["diff_pct_of_lowlevel"] = round(100 * row["diff_us"] / row["lowlevel"]["us_per_req"], 1)
        row["rate_gain_pct"] = round(100 * (row["lowlevel"]["rate"] / row["app"]["rate"] - 1), 1)
        paths[key] = row
    diff = paths["stream"]["diff_us"]
    share = {what: round(100 * diff / us, 1) for what, us in reference.items() if us}
    own = [round(100 * (by[(n, "app", "stream")]["us_per_req"] / by[(n, "lowlevel", "stream")]["us_per_req"] - 1), 1)
           for n in rounds if (n, "app", "stream") in by and (n, "lowlevel", "stream") in by]
    share_range = {what: [round(100 * min(paths["stream"]["diff_us_rounds"]) / us, 1),
                          round(100 * max(paths["stream"]["diff_us_rounds"]) / us, 1)]
                   for what, us in reference.items() if us}
    above = share.get("message", 0.0) > THRESHOLD_PCT
    return {
        "paths": paths, "reference_us": reference, "reference_source": source,
        "gain_pct_of_component": share, "gain_pct_range": share_range, "threshold_pct": THRESHOLD_PCT,
        "gain_pct_of_own_rounds": own, "gain_pct_of_own": median(own),
        "others_pct_median": median([r["others_pct"] for r in runs]),
        "decision": "keep low-level" if above else "switch to Application",
    }


async def measure(logs: Path, seconds: int, rounds: int, reference: dict[str, float] | None = None,
                  source: str = REFERENCE_SOURCE, registry: dict | None = None) -> dict:
    """Both servers, ``rounds`` interleaved rounds of ``seconds`` per wrk run; returns the results."""
    registry = registry if registry is not None else {}
    logs.mkdir(parents=True, exist_ok=True)
    lua = logs / "lua-http-server"
    lua.mkdir(exist_ok=True)
    auth = {"Authorization": ADMIN_AUTH, "Api-Key": API_KEY}
    scripts = {
        "stream": wrk_script(lua / "stream.lua", "POST", {**auth, "Content-Type": "application/xml"}, MSG_BODY),
        "health": wrk_script(lua / "health.lua", "GET", {"Api-Key": API_KEY}, expect="ok"),
    }
    servers = Servers(logs, registry)
    runs: list[dict] = []
    t_start = time.monotonic()
    try:
        for mode in MODES:
            await servers.start(mode)
        for mode in MODES:  # warm-up, not recorded: imports, caches, the first connections
            for key in PATHS:
                await one_run(servers, mode, key, scripts[key], 1, logs / f"wrk-http-{mode}-{key}-warmup.out",
                              registry)
        for n in range(rounds):
            order = MODES if n % 2 == 0 else MODES[::-1]
            for key in PATHS:
                for mode in order:
                    r = await one_run(servers, mode, key, scripts[key], seconds,
                                      logs / f"wrk-http-{mode}-{key}-r{n}.out", registry)
                    r["round"] = n
                    runs.append(r)
                    print(f"  round {n + 1}: {MODE_LABELS[mode]:<24} {PATHS[key]['label']:<30} "
                          f"{r['rate']:>7} req/s  p50 {r['p50_ms']:5.2f} ms  p99 {r['p99_ms']:5.2f} ms  "
                          f"{r['us_per_req']:5.1f} us/req ({r['user_us']:.0f}/{r['sys_us']:.0f})  "
                          f"others {r['others_pct']}%", flush=True)
    finally:
        await servers.stop()
    out = summarise(runs, reference or REFERENCE_US, source if reference else REFERENCE_SOURCE)
    out.update(seconds=seconds, rounds=rounds, concurrency=CONCURRENCY, runs=runs,
               total_s=round(time.monotonic() - t_start))
    return out


def report(res: dict) -> str:
    lines = [f"HTTP server: low-level web.Server vs web.Application ({res['rounds']} interleaved rounds of "
             f"{res['seconds']} s, wrk -c{res['concurrency']}; medians, [min-max] over the rounds)"]
    head = f"  {'path':<30}{'server':<26}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU us/req (user/sys)':>24}  range"
    lines.append(head)
    for key, row in res["paths"].items():
        for mode in MODES:
            m = row[mode]
            lines.append(f"  {PATHS[key]['label']:<30}{MODE_LABELS[mode]:<26}{m['rate']:>8.0f}{m['p50_ms']:>8.2f}"
                         f"{m['p99_ms']:>8.2f}{m['us_per_req']:>12.1f} ({m['user_us']:.0f}/{m['sys_us']:.0f})"
                         f"{'':>6}  [{m['us_range'][0]}-{m['us_range'][1]}]")
        lines.append(f"  {'':<30}Application - low-level: {row['diff_us']:+.1f} us/req "
                     f"({row['diff_pct_of_lowlevel']:+.1f}%; per round {', '.join(f'{d:+.1f}' for d in row['diff_us_rounds'])}), "
                     f"low-level serves {row['rate_gain_pct']:+.1f}% req/s")
    ref = ", ".join(f"{k} {v:.0f} us" for k, v in res["reference_us"].items())
    share = ", ".join(f"{k} {v:.1f}% [{res['gain_pct_range'][k][0]} to {res['gain_pct_range'][k][1]}]"
                      for k, v in res["gain_pct_of_component"].items())
    own = res["gain_pct_of_own_rounds"]
    lines.append(f"  Same rounds, Application - low-level as a share of the low-level /rest/stream request: "
                 f"median {res['gain_pct_of_own']:+.1f}% [{min(own):+.1f} to {max(own):+.1f}]; other jobs used "
                 f"{res['others_pct_median']}% of a core (median)")
    lines.append(f"  The low-level server saves {res['paths']['stream']['diff_us']:.1f} us per /rest/stream request: "
                 f"{share} of the component's CPU per request ({ref}, from {res['reference_source']}); "
                 f"threshold {res['threshold_pct']:.0f}% of a message -> {res['decision'].upper()}")
    return "\n".join(lines)


async def main_async(args) -> int:
    work = Path(os.environ.get("BENCH_DIR", REPO / "run" / "bench-http")).resolve()
    registry: dict = {}
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        res = await measure(work / "logs", args.seconds, args.rounds, registry=registry)
    finally:
        for pid in list(registry):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    (work / "results-http-server.json").write_text(json.dumps(res, indent=2))
    print(report(res), flush=True)
    print(f"bench.http_server: {res['total_s']} s; details in {work / 'results-http-server.json'}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", choices=MODES, help="(internal) run one server until SIGTERM")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_HTTP_SECONDS", "2")))
    p.add_argument("--rounds", type=int, default=default_rounds())
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    try:
        return asyncio.run(main_async(args))
    except BenchError as e:
        print(f"bench.http_server: FAILED: {e}", file=sys.stderr)
        return 1
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("bench.http_server: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
