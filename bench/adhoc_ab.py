"""Scenario 3 (``GET /rest/adhoc/localhost`` as admin, cached credentials, pooled session) A/B.

    python -m bench.adhoc_ab --tree base=/tmp/base --tree new=. [--rounds 6] [--seconds 3] [--profile new]

One throwaway Prosody; one component process per ``--tree`` (a source tree: its ``tigase_rest`` and
``scripts/rest`` are used), all running side by side for the whole run. Each round runs
``wrk -t1 -c16`` against every component in turn, the order reversed every other round, so every
pair of runs being compared is back to back. CPU per request = the component's utime+stime from
``/proc/<pid>/stat`` over the 200s. ``--profile NAME[,NAME]`` also records a py-spy raw profile of
those components, each during one extra run. ``--accept`` sets the Accept header (default: none, as scenario 3). ``--iq`` adds scenario 2
(``POST /rest/stream/`` IQ ping) to every round, so the ad-hoc path is also compared with the IQ path.
Every child leads its own session and is killed by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.run import API_KEY, DOMAIN, PING_BODY, USERS, basic, cpu_split, wrk_script
from tools.prosody import ProsodyServer, free_port, http_status, write_toml

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH of a source tree")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--profile", default="")
    ap.add_argument("--accept", default="")
    ap.add_argument("--path", default=f"/rest/adhoc/{DOMAIN}")
    ap.add_argument("--work", default="")
    ap.add_argument("--iq", action="store_true",
                    help="also scenario 2 (POST /rest/stream/ IQ ping) in every round, on the same components")
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    work = Path(args.work or tempfile.mkdtemp(prefix="adhoc-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    # One component JID per tree: two components on one JID would steal each other's stanzas.
    jids = [f"http{i or ''}.{DOMAIN}" for i in range(len(trees))]
    prosody = ProsodyServer(work / "prosody", log_level="warn", component_jid=jids[0], more_components=tuple(jids[1:]))
    procs: list[subprocess.Popen] = []
    try:
        for user, password in USERS.items():
            prosody.register(user, password)
        prosody.start()
        procs.append(prosody._proc)  # noqa: SLF001
        comps = {}
        for (name, tree), jid in zip(trees, jids):
            port = free_port()
            config = work / f"{name}.toml"
            write_toml(config, {
                "xmpp": {**prosody.component_config(), "component_jid": jid, "iq_timeout": 10},
                "http": {"host": "127.0.0.1", "port": port, "scripts_dir": str(tree / "scripts" / "rest")},
                "auth": {"api_keys": [API_KEY], "admins": [f"admin@{DOMAIN}"], "max_failures": 100},
                "storage": {"data_dir": str(work / f"data-{name}")},
                "log": {"level": "warning"},
            })
            log = open(work / f"{name}.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "tigase_rest", "--config", str(config)], cwd=tree,
                                    env={**os.environ, "PYTHONPATH": str(tree)}, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            comps[name] = (proc, f"http://127.0.0.1:{port}")
        headers = {"Authorization": basic("admin", USERS["admin"]), "Api-Key": API_KEY}
        if args.accept:
            headers["Accept"] = args.accept
        scripts = {"adhoc": (wrk_script(work / "adhoc.lua", "GET", headers, expect="admin#"), args.path)}
        if args.iq:
            scripts["iq"] = (wrk_script(work / "iq.lua", "POST", {**headers, "Content-Type": "application/xml"},
                                        PING_BODY, expect="result"), "/rest/stream/")
        bodies = {}
        for name, (proc, base) in comps.items():
            deadline = time.monotonic() + 30
            while http_status(base + "/rest/") != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start; see {work / (name + '.log')}")
                time.sleep(0.1)
            bodies[name] = asyncio.run(_get(base + args.path, headers))
        first = next(iter(bodies.values()))
        for name, body in bodies.items():
            print(f"{name}: first answer {len(body)} bytes, same as {trees[0][0]}: {body == first}", flush=True)

        def run(name: str, seconds: int, scenario: str = "adhoc") -> dict:
            proc, base = comps[name]
            lua, path = scripts[scenario]
            u0, s0 = cpu_split(proc.pid)
            out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(lua), base + path],
                                 capture_output=True, text=True, timeout=seconds + 30).stdout
            u1, s1 = cpu_split(proc.pid)
            res = json.loads(re.search(r"^BENCH_JSON (.*)$", out, re.M).group(1))
            ok = max(res["ok"], 1)
            return {"rps": ok / (res["duration_us"] / 1e6), "us": (u1 - u0 + s1 - s0) / ok * 1e6,
                    "user": (u1 - u0) / ok * 1e6, "sys": (s1 - s0) / ok * 1e6, "bad": res["bad"],
                    "p50": res["p50_us"] / 1000, "p99": res["p99_us"] / 1000}

        names = list(comps)
        for name in names:  # warm-up
            run(name, 1)
        runs = [(name, scenario) for scenario in scripts for name in names]
        results: dict[tuple[str, str], list[dict]] = {run_: [] for run_ in runs}
        for r in range(args.rounds):
            order = runs if r % 2 == 0 else runs[::-1]
            line = []
            for name, scenario in order:
                res = run(name, args.seconds, scenario)
                results[name, scenario].append(res)
                line.append(f"{name}/{scenario} {res['us']:.0f} µs ({res['user']:.0f}/{res['sys']:.0f}) "
                            f"{res['rps']:.0f}/s" + (f" bad={res['bad']}" if res["bad"] else ""))
            print(f"round {r + 1}: " + ", ".join(line), flush=True)
        for (name, scenario), rows in results.items():
            us = [x["us"] for x in rows]
            print(f"{name}/{scenario}: median {statistics.median(us):.0f} µs/req [{min(us):.0f}-{max(us):.0f}], "
                  f"user {statistics.median(x['user'] for x in rows):.0f}, "
                  f"sys {statistics.median(x['sys'] for x in rows):.0f}, "
                  f"{statistics.median(x['rps'] for x in rows):.0f} req/s, "
                  f"p99 {statistics.median(x['p99'] for x in rows):.1f} ms")

        def ratio(a: tuple[str, str], b: tuple[str, str]) -> str:
            ratios = [y["us"] / x["us"] for x, y in zip(results[a], results[b])]
            return ", ".join(f"{v:.2f}" for v in ratios) + f"; median {statistics.median(ratios):.2f}"
        for scenario in scripts:
            for name in names[1:]:
                print(f"{scenario}: {name}/{names[0]} per round: {ratio((names[0], scenario), (name, scenario))}")
        if args.iq:
            for name in names:
                print(f"{name}: adhoc/iq per round: {ratio((name, 'iq'), (name, 'adhoc'))}")
        for name in filter(None, args.profile.split(",")):
            proc, base = comps[name]
            raw = work / f"profile-{name}.txt"
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "500",
                                    "--format", "raw", "--nonblocking", "-o", str(raw), "-p", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(spy)
            time.sleep(1)
            run(name, args.seconds * 2)
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            print(f"profile: {raw}")
            print(buckets(raw))
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
    print(f"work dir: {work}")
    return 0


# (bucket, what a frame contains), deepest matching frame first: where the component's time goes.
BUCKETS = (
    ("c2s: parsing the reply (expat + ElementTree)", ("XMLPullParser.",)),
    ("c2s: stanza boundaries, IQ matching", ("ClientStream.", "IqTracker.take")),
    ("c2s: the request's serialisation", ("IqTracker.send", "xmpp/stanzas.py")),
    ("commands_list", ("commands_list",)),
    ("encoding the answer (coding.encode)", ("tigase_rest/coding.py",)),
    ("caller pool: cached credentials, session", ("xmpp/sessions.py",)),
    ("IqTracker.request: future, timer", ("IqTracker.request",)),
    ("handler script + Service", ("adhoc.py", "tigase_rest/service.py")),
    ("auth: Basic header, API key", ("tigase_rest/http/auth.py",)),
    ("RestServer: dispatch, response, access log", ("tigase_rest/http/",)),
    ("aiohttp", ("aiohttp/",)),
    ("asyncio loop", ("asyncio/",)),
)


def buckets(raw: Path) -> str:
    """The samples of a py-spy raw profile in BUCKETS; socket calls and epoll apart (py-spy charges
    them wall time, preemption included: /proc's system time is the measure of the kernel's part)."""
    counts: dict[str, int] = {}
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if leaf.startswith("_SelectorSocketTransport.write "):
            bucket = "(socket send())"
        elif leaf.startswith("EpollSelector.select "):
            bucket = "(epoll)"
        elif leaf.startswith("_SelectorSocketTransport._read_ready__data_received ") and "selector_events.py:995" in leaf:
            bucket = "(socket recv())"
        else:
            bucket = next((name for frame in reversed(frames) for name, keys in BUCKETS
                           if any(k in frame for k in keys)), "other")
        counts[bucket] = counts.get(bucket, 0) + int(n)
    python = sum(v for k, v in counts.items() if not k.startswith("("))
    total = sum(counts.values())
    lines = [f"{total} samples, {python} outside socket calls and epoll; share of those:"]
    for name, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        share = f"{100 * v / python:5.1f}%" if not name.startswith("(") else f"({100 * v / total:.0f}% of all)"
        lines.append(f"  {share} {name}")
    return "\n".join(lines)


async def _get(url: str, headers: dict) -> bytes:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as resp:
            return await resp.read()


if __name__ == "__main__":
    sys.exit(main())
