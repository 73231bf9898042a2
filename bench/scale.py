"""Step N of ``make bench`` ("past one core", issue 16): one instance against two.

On the bench's throwaway Prosody (with the component blocks ``http1`` to ``http4.localhost`` beside
``http.localhost``), scenarios 1 (a chat message to bob) and 2 (an IQ ping round trip), with the
same wrk Lua scripts as step A, against four setups that run side by side:

- ``one``: one instance (``http.localhost``, the default SQLite store), wrk straight at it;
- ``one+nginx``: the same instance behind nginx;
- ``two+nginx``: two instances (``http1``/``http2``, one ``deployment``, a PostgreSQL store, as the
  README's "Scaling out" says) behind a second nginx; also at c64;
- ``two+reuse_port``: two more (``http3``/``http4``, their own deployment on the same PostgreSQL) on
  one port with ``[http] reuse_port``: the kernel spreads wrk's connections, no proxy.

nginx is ``tools.nginx`` (the README's site config, ``worker_processes 1``: 2 cores here), PostgreSQL
``tools.postgres``; both are installed with apt when missing. The setups are measured in BENCH_ROUNDS
interleaved rounds (the order flipped every round, as step A's REST/direct rounds). Per run: req/s,
p50/p99, bob's count, and CPU time per request of each process: each instance (user/sys), nginx
(master + workers), Prosody, PostgreSQL (master + backends), wrk. The summary takes the median of
the rounds and turns the CPU per request into throughput ceilings for 4, 8 and 16 cores (the model
is written out in the report and in BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.run import (
    API_KEY,
    BenchError,
    CONCURRENCY,
    RATIO_ROUNDS,
    children_cpu,
    cpu_split,
    machine_cpu,
    self_cpu,
)
from tools.nginx import NginxServer
from tools.postgres import PostgresServer
from tools.prosody import free_port

INSTANCES = ("http1.localhost", "http2.localhost")  # two+nginx
SHARED_PORT = ("http3.localhost", "http4.localhost")  # two+reuse_port: both on one port, no proxy
COMPONENTS = INSTANCES + SHARED_PORT
SETUPS = ("one", "one+nginx", "two+nginx", "two+reuse_port")
TIER = ("component", "http1", "http2", "http3", "http4", "nginx")  # the REST tier's processes
WIDE = 64  # the second concurrency, two+nginx only
CORES = (4, 8, 16)
UPSTREAM = re.compile(r" upstream=(\S+)")  # tools.nginx's access log format
NGINX_WORKERS = 1  # tools.nginx writes worker_processes 1: 2 cores shared with wrk, Prosody and the instances


# --- CPU of a process and its children (nginx workers, PostgreSQL backends) --------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return out


def tree_split(pids: dict[int, tuple[float, float]]) -> tuple[float, float]:
    return sum(u for u, _ in pids.values()), sum(s for _, s in pids.values())


def snapshot(groups: dict[str, int]) -> dict[str, dict[int, tuple[float, float]]]:
    """(user, sys) seconds of every process of each group (a root pid and its descendants)."""
    return {name: {p: cpu_split(p) for p in descendants(root)} for name, root in groups.items()}


def used_between(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    """Per group: CPU used between two snapshots; a process born meanwhile counts from zero
    (one that died meanwhile is lost: none should on these paths)."""
    out = {}
    for name, procs in after.items():
        u = s = 0.0
        for pid, (u1, s1) in procs.items():
            u0, s0 = before[name].get(pid, (0.0, 0.0))
            u, s = u + max(0.0, u1 - u0), s + max(0.0, s1 - s0)
        out[name] = (u, s)
    return out


async def all_listening(url: str, jids: tuple[str, ...], limit: float = 15) -> None:
    """Until new connections to ``url`` have reached every instance of ``jids`` sharing its port
    (``[http] reuse_port``): the bench's readiness check of the second may have been answered by
    the first."""
    seen: set[str] = set()
    deadline = time.monotonic() + limit
    while seen != set(jids):
        if time.monotonic() > deadline:
            raise BenchError(f"only {sorted(seen)} of {list(jids)} answered on {url} within {limit} s")
        async with aiohttp.ClientSession() as http:  # a new connection each time
            async with http.get(url + "/rest/health", headers={"Api-Key": API_KEY, "Accept": "application/json"}) as r:
                if r.status == 200:
                    seen.add((await r.json())["health"]["component_jid"])
        await asyncio.sleep(0.05)


# --- the step ---------------------------------------------------------------------------------


class Scale:
    def __init__(self, bench, scripts: Path):
        self.bench = bench
        self.scripts = scripts
        self.components: dict[str, object] = {}  # instance name -> Popen
        self.urls: dict[str, str] = {}  # setup -> base URL wrk uses
        self.postgres: PostgresServer | None = None
        self.nginx: list[NginxServer] = []

    async def start(self) -> None:
        b = self.bench
        self.postgres = PostgresServer()
        await asyncio.to_thread(self.postgres.start)
        self._register(self.postgres._proc)  # noqa: SLF001 - killed by PID on failure
        proxies = {"http": {"trusted_proxies": ["127.0.0.1"]}}
        await b.start_component("N-one", self.scripts, proxies)
        self._adopt("one")
        for jid in INSTANCES:
            name = jid.split(".")[0]
            await b.start_component(f"N-{name}", self.scripts, {
                **proxies, "xmpp": {"component_jid": jid, "deployment": list(INSTANCES)},
                "storage": {"url": self.postgres.url}})
            self._adopt(name)
        port = free_port()
        for jid in SHARED_PORT:  # [http] reuse_port: the kernel spreads wrk's connections over both
            name = jid.split(".")[0]
            await b.start_component(f"N-{name}", self.scripts, {
                "http": {"port": port, "reuse_port": True},
                "xmpp": {"component_jid": jid, "deployment": list(SHARED_PORT)}, "storage": {"url": self.postgres.url}})
            self._adopt(name)
        self.urls["two+reuse_port"] = f"http://127.0.0.1:{port}"
        await all_listening(self.urls["two+reuse_port"], SHARED_PORT)
        for setup, names in (("one+nginx", ["one"]), ("two+nginx", ["http1", "http2"])):
            nginx = NginxServer([self.urls[n].removeprefix("http://") for n in names])
            self.nginx.append(nginx)
            await asyncio.to_thread(nginx.start)
            self._register(nginx._proc)  # noqa: SLF001
            self.urls[setup] = nginx.url

    def _adopt(self, name: str) -> None:
        """Keep the component start_component just started (the bench holds one at a time)."""
        b = self.bench
        self.components[name] = b.component
        self.urls[name] = b.base
        b.component = None

    def _register(self, proc) -> None:
        if proc is not None:
            self.bench.children[proc.pid] = proc

    def stop(self) -> None:
        b = self.bench
        for proc in self.components.values():
            b.component = proc
            b.stop_component()
        self.components.clear()
        for server in [*self.nginx, self.postgres]:
            if server is not None:
                pid = server._proc.pid if server._proc else None  # noqa: SLF001
                server.cleanup()
                b.children.pop(pid, None)

    def groups(self, setup: str) -> dict[str, int]:
        """The processes measured in a run of ``setup`` (the idle ones too: they should stay ~0)."""
        out = {}
        if setup == "two+nginx":
            out.update(http1=self.components["http1"].pid, http2=self.components["http2"].pid)
            out["nginx"] = self.nginx[1]._proc.pid  # noqa: SLF001
        elif setup == "two+reuse_port":
            out.update(http3=self.components["http3"].pid, http4=self.components["http4"].pid)
        else:
            out["component"] = self.components["one"].pid
            if setup == "one+nginx":
                out["nginx"] = self.nginx[0]._proc.pid  # noqa: SLF001
        out["prosody"] = self.bench.prosody_pid
        out["postgres"] = self.postgres._proc.pid  # noqa: SLF001
        return out

    async def run_one(self, setup: str, what: str, conns: int, label: str, seconds: int) -> dict:
        b = self.bench
        b.base = self.urls[setup]
        script = b.lua_msg if what == "message" else b.lua_iq
        groups = self.groups(setup)
        count0 = b.bob_count
        before = snapshot(groups)
        load0, self0, all0, t0 = children_cpu(), self_cpu(), machine_cpu(), time.monotonic()
        tag = f"N-{setup.replace('+', '-')}-{what}-c{conns}-{label.replace(' ', '')}"
        result = await b.wrk(tag, script, "/rest/stream/", conns, seconds)
        wall = time.monotonic() - t0
        used = used_between(before, snapshot(groups))
        totals = {k: u + s for k, (u, s) in used.items()}
        totals["wrk"] = children_cpu() - load0
        totals["bench+bob"] = self_cpu() - self0
        totals["others"] = max(0.0, machine_cpu() - all0 - sum(totals.values()))
        if what == "message":
            result["delivered"] = await b.bob_settled() - count0
            result["lost"] = max(0, result["ok"] - result["delivered"])
        ok = result["ok"] or 1
        result["cpu_pct"] = {k: round(100 * v / wall) for k, v in totals.items()}
        result["cpu_us"] = {k: {"user": round(1e6 * u / ok), "sys": round(1e6 * s / ok)} for k, (u, s) in used.items()}
        result["cpu_us"]["wrk"] = {"total": round(1e6 * totals["wrk"] / ok)}
        result.update(setup=setup, what=what, conns=conns, seconds=seconds)
        result.pop("wrk", None)
        print(f"  {label:<9} {setup:<10} {what:<8} c{conns:<3} {fmt_run(result)}", flush=True)
        return result

    def plan(self) -> list[tuple[str, str, int]]:
        runs = [(setup, what, CONCURRENCY) for setup in SETUPS for what in ("message", "IQ")]
        return runs + [("two+nginx", what, WIDE) for what in ("message", "IQ")]


async def step_scale(bench, scripts: Path) -> None:
    """(N) one instance, one behind nginx, two behind nginx: interleaved rounds; results["scale"]."""
    rounds = max(1, RATIO_ROUNDS)
    print(f"[N] past one core: {', '.join(SETUPS)}; scenarios 1 and 2 at c{CONCURRENCY} (two+nginx also "
          f"c{WIDE}); {rounds} interleaved rounds of {bench.seconds} s per run; nginx worker_processes "
          f"{NGINX_WORKERS}", flush=True)
    scale = Scale(bench, scripts)
    try:
        await scale.start()
        # Warm-up (not recorded): the admin's Basic login gets cached in each instance, pools fill.
        for setup in SETUPS:
            for what in ("message", "IQ"):
                await scale.run_one(setup, what, CONCURRENCY, "warm-up", 2)
        plan = scale.plan()
        runs = []
        for n in range(rounds):
            for setup, what, conns in (plan if n % 2 == 0 else plan[::-1]):
                runs.append({"round": n + 1, **await scale.run_one(setup, what, conns, f"round {n + 1}",
                                                                   bench.seconds)})
        for proc in scale.components.values():
            if proc.poll() is not None:
                raise BenchError(f"an instance exited during step N ({proc.returncode})")
        spread = Counter(m.group(1) for m in map(UPSTREAM.search, scale.nginx[1].access_log()) if m)
        bench.results["scale"] = {
            "nginx_worker_processes": NGINX_WORKERS, "rounds": rounds, "seconds": bench.seconds,
            "upstreams_seen": dict(spread), "runs": runs, "summary": summarise(runs),
        }
    finally:
        bench.base = ""
        scale.stop()


# --- summary and model ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(runs: list[dict]) -> dict:
    """Median of the rounds per (setup, scenario, concurrency), the REST tier's CPU and the ceilings."""
    out = {}
    for key in dict.fromkeys((r["setup"], r["what"], r["conns"]) for r in runs):
        rows = [r for r in runs if (r["setup"], r["what"], r["conns"]) == key]
        procs = {p for r in rows for p in r["cpu_us"]}
        cpu = {}
        for p in sorted(procs):
            parts = [k for k in ("user", "sys", "total") if any(k in r["cpu_us"].get(p, {}) for r in rows)]
            cpu[p] = {k: round(median([r["cpu_us"][p].get(k, 0) for r in rows])) for k in parts}
        total = {p: sum(v.values()) for p, v in cpu.items()}
        tier = sum(v for p, v in total.items() if p in TIER)
        server = total.get("prosody", 0)
        entry = {
            "rate": round(median([r["rate"] for r in rows])), "rates": [round(r["rate"]) for r in rows],
            "p50_ms": round(median([r["p50_ms"] for r in rows]), 2), "p99_ms": round(median([r["p99_ms"] for r in rows]), 2),
            "ok": sum(r["ok"] for r in rows), "delivered": sum(r.get("delivered", 0) for r in rows) if key[1] == "message" else None,
            "lost": sum(r.get("lost", 0) for r in rows), "errors": sum(r["errors"] for r in rows),
            "others_pct": round(median([r["cpu_pct"]["others"] for r in rows])),
            "cpu_us": cpu, "tier_us": tier, "prosody_us": server,
        }
        entry["ceilings"] = ceilings(tier, server)
        out[f"{key[0]} {key[1]} c{key[2]}"] = entry
    return out


def ceilings(tier_us: float, prosody_us: float) -> dict:
    """req/s for CORES cores, two ways (wrk, the client, is never counted: it runs elsewhere in life).

    - ``rest_only``: the REST tier (instances + nginx) has the cores to itself, the XMPP server is on
      other machines: cores * 1e6 / tier_us.
    - ``with_prosody``: the REST tier and Prosody share the cores: cores * 1e6 / (tier_us + prosody_us).
    Both are capped by Prosody, single-threaded Lua: one core at most, 1e6 / prosody_us whatever the
    core count; ``prosody_cap_at_cores`` is the core count from which that cap is the limit.
    """
    if not tier_us or not prosody_us:
        return {}
    cap = 1e6 / prosody_us
    return {
        "prosody_cap": round(cap),
        "prosody_cap_at_cores": {"rest_only": round(tier_us / prosody_us, 1),
                                 "with_prosody": round((tier_us + prosody_us) / prosody_us, 1)},
        "rest_only_uncapped": {c: round(c * 1e6 / tier_us) for c in CORES},
        "with_prosody_uncapped": {c: round(c * 1e6 / (tier_us + prosody_us)) for c in CORES},
        "rest_only": {c: round(min(c * 1e6 / tier_us, cap)) for c in CORES},
        "with_prosody": {c: round(min(c * 1e6 / (tier_us + prosody_us), cap)) for c in CORES},
    }


def fmt_run(r: dict) -> str:
    s = f"{r['rate']:8.0f} req/s  p50 {r['p50_ms']:5.2f} ms  p99 {r['p99_ms']:6.2f} ms"
    if "delivered" in r:
        s += f"  delivered {r['delivered']}/{r['ok']}"
    if r.get("errors"):
        s += f"  errors {r['errors']}"
    s += "  us/req " + " ".join(f"{k} {'/'.join(str(x) for x in v.values())}" for k, v in r["cpu_us"].items())
    return s + f"  others {r['cpu_pct']['others']}%"


def report(res: dict) -> str:
    """The rows of the bench report for step N."""
    summary = res["summary"]
    lines = ["", f"Past one core (step N): median of {res['rounds']} interleaved rounds of {res['seconds']} s; "
             f"nginx worker_processes {res['nginx_worker_processes']}; two+nginx reached {res['upstreams_seen']}"]
    head = (f"{'setup / scenario':<26}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'delivered':>20}{'others':>8}"
            f"  CPU us/req (user/sys; wrk total)")
    lines += [head, "-" * (len(head) + 30)]
    for name, e in summary.items():
        delivered = f"{e['delivered']}/{e['ok']}" if e["delivered"] is not None else "-"
        cpu = "  ".join(f"{p} {'/'.join(str(x) for x in v.values())}" for p, v in e["cpu_us"].items())
        lines.append(f"{name:<26}{e['rate']:>8}{e['p50_ms']:>8.2f}{e['p99_ms']:>8.2f}{delivered:>20}"
                     f"{e['others_pct']:>7}%  {cpu}")
    lines.append("req/s per round: " + "; ".join(f"{name} {e['rates']}" for name, e in summary.items()))
    lines.append("")
    lines.append("Ceilings, req/s (wrk, the client, not counted). REST tier = instances + nginx, CPU us/req user+sys.")
    lines.append("  rest_only = cores x 1e6 / tier (the XMPP server elsewhere); with_prosody = cores x 1e6 / (tier + "
                 "Prosody) (sharing the cores); Prosody is single-threaded Lua: 1e6 / its us/req at most, from "
                 "tier/Prosody (+1) cores on; shown as uncapped -> capped")
    for name, e in summary.items():
        c = e["ceilings"]
        if not c:
            continue
        both = (lambda kind: ", ".join(f"{k}c {c[kind + '_uncapped'][k]}" + (
            f"->{v}" if v != c[kind + "_uncapped"][k] else "") for k, v in c[kind].items()))
        lines.append(
            f"  {name:<22} tier {e['tier_us']} + Prosody {e['prosody_us']} us; Prosody cap {c['prosody_cap']}/s from "
            f"{c['prosody_cap_at_cores']['rest_only']}/{c['prosody_cap_at_cores']['with_prosody']} cores; "
            f"rest_only {both('rest_only')}; with_prosody {both('with_prosody')}")
    return "\n".join(lines)
