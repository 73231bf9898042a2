"""Two versions of the component, interleaved on one Prosody: which one costs less CPU per request?

    python -m bench.ab main HEAD                       # git revisions (or source folders)
    python -m bench.ab main HEAD --rounds 5 --seconds 5 --scenarios message,iq,adhoc
    python -m bench.ab HEAD --profile message          # py-spy the last version under scenario 1
    python -m bench.ab HEAD HEAD::/usr/bin/python3.13  # one version on two interpreters (VERSION::PYTHON)

The tool for "profile first, then measure the change": every version is exported (``git archive``)
into ``run/ab/<name>/`` and started from there with its own handler scripts (``builtin_scripts =
false``), on the same throwaway Prosody with bob online (``bench.run``'s setup). Each round runs
every (scenario, version) pair back to back with ``wrk -t1 -c16``, the order of the versions flipped
every round, so that a VM whose speed drifts between minutes slows both sides alike. Reported per
pair: the component's CPU per request (utime+stime over the 200s, user/sys) of each round and the
median of the per-round ratios, which is the figure to trust; absolute µs are this minute's.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.run import DOMAIN, REPO, Bench, BenchError, fmt_row

SCENARIOS = {  # name -> (wrk script attribute of Bench, path, counts bob's messages)
    "message": ("lua_msg", "/rest/stream/", True),
    "iq": ("lua_iq", "/rest/stream/", False),
    "adhoc": ("lua_adhoc", f"/rest/adhoc/{DOMAIN}", False),
}


def export(version: str, root: Path) -> Path:
    """A source folder as is, or a git revision exported into ``root/<rev>``."""
    if Path(version).is_dir():
        return Path(version).resolve()
    rev = subprocess.run(["git", "rev-parse", "--short", version], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    target = root / rev
    if not (target / "tigase_rest").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


async def main_async(args: argparse.Namespace) -> None:
    work = REPO / "run" / "ab"
    work.mkdir(parents=True, exist_ok=True)
    trees = {v: export(v.split("::")[0], work / "src") for v in args.versions}
    pythons = {v: v.split("::")[1] if "::" in v else sys.executable for v in args.versions}
    bench = Bench(work, args.seconds, profile=False)
    bench.logs.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(bench.start_prosody)
    await bench.start_bob()
    import aiohttp
    bench.http = aiohttp.ClientSession(trust_env=False)
    bench.write_lua()
    scenarios = args.scenarios.split(",")
    table: dict[tuple[str, str], list[dict]] = {}
    try:
        for n in range(args.rounds):
            order = list(args.versions) if n % 2 == 0 else list(reversed(args.versions))
            for version in order:
                await bench.start_component(f"v{args.versions.index(version)}", trees[version] / "scripts" / "rest",
                                             source=trees[version], python=pythons[version])
                await bench.rest("warmup", f"warm-up {version}", bench.lua_msg, "/rest/stream/", seconds=1,
                                 messages=True, record=False)
                await bench.rest("warmup", f"warm-up {version}", bench.lua_adhoc, f"/rest/adhoc/{DOMAIN}",
                                 seconds=1, record=False)
                for scenario in scenarios:
                    script, path, messages = SCENARIOS[scenario]
                    r = await bench.rest(f"{scenario}-{n}", f"round {n + 1} {scenario} {version}",
                                         getattr(bench, script), path, messages=messages, record=False)
                    table.setdefault((scenario, version), []).append(r)
                if args.profile and version == args.versions[-1] and n == args.rounds - 1:
                    await profile(bench, args.profile, args.seconds)
                bench.stop_component()
    finally:
        bench.stop_component()
        await bench.http.close()
        await bench.close()
    print(f"\n{'scenario':<10}" + "".join(f"{v:>28}" for v in args.versions) + "   ratio (last/first), per round")
    for scenario in scenarios:
        cols, per = [], []
        for version in args.versions:
            runs = table[(scenario, version)]
            us = [r["cpu_us_per_req"]["component"] for r in runs]
            rate = statistics.median(r["rate"] for r in runs)
            cols.append(f"{statistics.median(us):6.0f} µs {rate:7.0f}/s [{min(us)}-{max(us)}]")
        first, last = table[(scenario, args.versions[0])], table[(scenario, args.versions[-1])]
        ratios = [b["cpu_us_per_req"]["component"] / a["cpu_us_per_req"]["component"] for a, b in zip(first, last)]
        print(f"{scenario:<10}" + "".join(f"{c:>28}" for c in cols)
              + f"   median {statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})")


async def profile(bench: Bench, scenario: str, seconds: int) -> None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = bench.work / f"profile-{scenario}.txt"
    cmd = [pyspy, "record", "--pid", str(bench.component.pid), "--duration", str(seconds), "--rate", "500",
           "--format", "raw", "--full-filenames", "--nonblocking", "-o", str(out)]
    spy = asyncio.ensure_future(bench.run_child(f"py-spy-{scenario}", cmd, seconds + 60))
    await asyncio.sleep(0.5)
    script, path, messages = SCENARIOS[scenario]
    r = await bench.rest("profiled", f"under py-spy {scenario}", getattr(bench, script), path, messages=messages,
                         record=False)
    await spy
    print(f"profile: {out} ({fmt_row(r)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="git revisions or source folders (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--scenarios", default="message,iq,adhoc")
    parser.add_argument("--profile", choices=sorted(SCENARIOS), help="py-spy the last version in the last round")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        asyncio.run(main_async(args))
    except BenchError as e:
        print(f"bench.ab: {e}", file=sys.stderr)
        return 1
    print(f"bench.ab: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
