"""Scenario 3 (``GET /rest/adhoc/localhost`` as admin, cached credentials, pooled session) A/B.

    python -m bench.adhoc_ab --tree base=/tmp/base --tree new=. [--rounds 6] [--seconds 3] [--profile new]

One throwaway Prosody; one component process per ``--tree`` (a source tree: its ``tigase_rest`` and
``scripts/rest`` are used), all running side by side for the whole run. Each round runs
``wrk -t1 -c16`` against every component in turn, the order reversed every other round, so every
pair of runs being compared is back to back. CPU per request = the component's utime+stime from
``/proc/<pid>/stat`` over the 200s. ``--profile NAME`` also records a py-spy raw profile of that
component during one extra run. ``--accept`` sets the Accept header (default: none, as scenario 3).
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

from bench.run import API_KEY, DOMAIN, USERS, basic, cpu_split, wrk_script
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
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    work = Path(args.work or tempfile.mkdtemp(prefix="adhoc-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    prosody = ProsodyServer(work / "prosody", log_level="warn")
    procs: list[subprocess.Popen] = []
    try:
        for user, password in USERS.items():
            prosody.register(user, password)
        prosody.start()
        procs.append(prosody._proc)  # noqa: SLF001
        comps = {}
        for name, tree in trees:
            port = free_port()
            config = work / f"{name}.toml"
            write_toml(config, {
                "xmpp": {**prosody.component_config(), "iq_timeout": 10},
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
        lua = wrk_script(work / "adhoc.lua", "GET", headers, expect="admin#")
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

        def run(name: str, seconds: int) -> dict:
            proc, base = comps[name]
            u0, s0 = cpu_split(proc.pid)
            out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(lua), base + args.path],
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
        results: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            line = []
            for name in order:
                res = run(name, args.seconds)
                results[name].append(res)
                line.append(f"{name} {res['us']:.0f} µs ({res['user']:.0f}/{res['sys']:.0f}) {res['rps']:.0f}/s"
                            + (f" bad={res['bad']}" if res["bad"] else ""))
            print(f"round {r + 1}: " + ", ".join(line), flush=True)
        for name in names:
            us = [x["us"] for x in results[name]]
            print(f"{name}: median {statistics.median(us):.0f} µs/req [{min(us):.0f}-{max(us):.0f}], "
                  f"user {statistics.median(x['user'] for x in results[name]):.0f}, "
                  f"sys {statistics.median(x['sys'] for x in results[name]):.0f}, "
                  f"{statistics.median(x['rps'] for x in results[name]):.0f} req/s, "
                  f"p99 {statistics.median(x['p99'] for x in results[name]):.1f} ms")
        if len(names) > 1:
            base = names[0]
            for name in names[1:]:
                ratios = [b["us"] / a["us"] for a, b in zip(results[base], results[name])]
                print(f"{name}/{base} per round: " + ", ".join(f"{x:.2f}" for x in ratios)
                      + f"; median {statistics.median(ratios):.2f}")
        if args.profile:
            proc, base = comps[args.profile]
            raw = work / f"profile-{args.profile}.txt"
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "500",
                                    "--format", "raw", "--nonblocking", "-o", str(raw), "-p", str(proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(spy)
            time.sleep(1)
            run(args.profile, args.seconds * 2)
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            print(f"profile: {raw}")
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


async def _get(url: str, headers: dict) -> bytes:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as resp:
            return await resp.read()


if __name__ == "__main__":
    sys.exit(main())
