"""``make bench``: tigase-rest's REST endpoints side by side with direct XMPP, in one run.

    python -m bench.run            # BENCH_SECONDS=10 per scenario (default), BENCH_PROFILE=0 skips py-spy

A throwaway Prosody (hashed passwords, ``limits = {}``), the component as a subprocess (log level
warning) and ``bob``, who counts the chat messages he receives with the same raw-socket receiver
as the direct baseline (``bench.direct``), so both paths pay the same for the receiving end. Load comes from ``wrk``
(``-t1 -c16``, Lua scripts generated into the work dir) for REST and from ``bench.direct`` (a
raw-socket c2s client, its own process) for the direct baseline. Everything on 127.0.0.1.

Steps: (A) the component with 10 handlers: the REST scenarios, the direct ones, scenario 1 at
concurrency 1/16/256, a trivial handler, py-spy profiles of scenarios 1 and 2, then 1,000 users
created with the admin add-user command over REST; (C) the component with 1,000 handlers: the
trivial handler again and its RSS; (B) a fresh component: RSS with 1 and with 1,000 pooled caller
sessions; then RouteTable.resolve timed in-process for 10 and 1,000 handlers; (H) aiohttp's low-level
web.Server against a web.Application, both serving the real RestServer with the XMPP side faked
(bench.http_server: 2 x BENCH_ROUNDS interleaved rounds of BENCH_HTTP_SECONDS=2 per run, about 1 min);
(U) accounts (issue 14): PUT /rest/user/{jid} creating a new account per request (add-user) and
GET /rest/user/{jid} of an existing one (user-stats), API key alone; (W) a webhook bot (issue 15): raw
c2s sessions send chat messages to echo@http.localhost, the component POSTs each to a local receiver
(bench.webhook_receiver, answering {"body": "echo"}) and sends its answer back: messages/s round trip;
(E) the peer (issue 16, bench.peer): a throwaway ejabberd with mod_http_api, its own POST /api/send_message
against the component's POST /rest/stream/ message on the same ejabberd, in BENCH_ROUNDS interleaved rounds;
(N) past one core (issue 16, bench.scale): scenarios 1 and 2 against one instance, the same behind nginx,
two instances (http1/http2, PostgreSQL) behind nginx and two more sharing one port ([http] reuse_port), in
BENCH_ROUNDS interleaved rounds, with CPU per request of every process and the ceilings for 4/8/16 cores.

BENCH_WAIT_QUIET=S waits up to S seconds, before starting, for other jobs on the machine to calm down.
Every scenario reports the CPU that other processes used meanwhile ("others") and CPU time per request.
BENCH_STEPS=A,C,B,U,W,E,N,R,H (default: all) runs only some of the steps above (R: the in-process routing timing,
H: the HTTP server comparison, U: accounts, W: the webhook bot, E: ejabberd's mod_http_api, N: one vs two
instances; BENCH_STEPS=U,W is about 1 min, E about 3 min at the default 10 s, N about 6 min).
BENCH_USERS (default 1000) changes the number of users of the memory step, only to try the script quickly.
Work files (configs, logs, wrk scripts, profiles, results.json) go to ./run/bench (BENCH_DIR).
Every child process is started in its own session and stopped by PID, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import timeit
from collections import Counter
from pathlib import Path

import aiohttp
from bench import direct as direct_client

from tools.prosody import ProsodyServer, free_port, http_status, write_toml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "rest"
DOMAIN = "localhost"
API_KEY = "bench-key"
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
BOB_RESOURCE = "bench"
MARK = "bench message"
MSG_BODY = f'<message type="chat" to="bob@{DOMAIN}/{BOB_RESOURCE}"><body>{MARK}</body></message>'
PING_BODY = f'<iq type="get" to="{DOMAIN}"><ping xmlns="urn:xmpp:ping"/></iq>'
MANY_USERS = int(os.environ.get("BENCH_USERS", "1000"))  # a smaller number only to try the script quickly
HANDLERS = (10, 1000)
CONCURRENCY = 16
GROWTH = (1, 16, 256)
# REST/direct is also measured in this many rounds that alternate REST and direct runs: on a VM the
# server's own speed drifts by up to 30% between minutes, so one pair of runs can mislead either way.
RATIO_ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RATIO_PAIRS = (("message", "rest_message", "direct_message"), ("IQ", "rest_iq", "direct_ping"))
OVERALL_TIMEOUT = 20 * 60  # a hard stop for the whole run, seconds
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS_TEXT = """Targets (issue "Performance"): message POST >= 2,000 req/s, IQ >= 1,700 req/s (hashed passwords),
p99 < 20 ms at c16; REST >= 70% of direct; RSS < 80 MB with 1,000 sessions; routing not linear in handlers."""


class BenchError(Exception):
    pass


def git_revision() -> str:
    """The commit measured, with "+dirty" when the work tree has changes outside bench/."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench", ":!BENCHMARKS.md",
                                 ":!Makefile"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if status.strip() else "")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}@{DOMAIN}:{password}".encode()).decode()


ADMIN_AUTH = basic("admin", USERS["admin"])


# --- /proc readings --------------------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a live process, seconds ((0, 0) when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a process, the children it waited for (cutime/cstime) and its live
    descendants (ejabberd's beam.smp runs erl_child_setup); (0, 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user, system = (int(fields[11]) + int(fields[13])) / CLK_TCK, (int(fields[12]) + int(fields[14])) / CLK_TCK
        kids = [int(k) for task in os.listdir(f"/proc/{pid}/task")
                for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    for kid in kids:
        u, s = tree_cpu_split(kid)
        user, system = user + u, system + s
    return user, system


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS since start) in kB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_cpu() -> float:
    """CPU seconds used by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def wait_for_quiet(limit: float) -> float:
    """Wait (at most ``limit`` s) until other jobs use < 15% of the machine for 3 s; returns the busy share."""
    deadline = time.monotonic() + limit
    while True:
        t0, c0 = time.monotonic(), machine_cpu()
        time.sleep(3)
        busy = (machine_cpu() - c0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))
        if busy < 0.15 or time.monotonic() >= deadline:
            return busy
        print(f"bench: the machine is {busy:.0%} busy with other jobs; waiting (BENCH_WAIT_QUIET)", flush=True)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mod_rest_note(what: str, missing: str) -> str:
    """Whether Prosody's mod_rest (prosody-modules) could be measured beside ``what`` (steps W and E)."""
    installed = any(p.name in ("mod_rest", "mod_rest.lua") for p in Path("/usr/lib/prosody/modules").glob("mod_rest*"))
    return "Prosody mod_rest (prosody-modules) is " + (f"installed, but {what} is not measured by this step"
                                                       if installed else f"not installed here: {missing}")


# --- wrk scripts ------------------------------------------------------------------------------


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def wrk_script(path: Path, method: str, headers: dict[str, str], body: str | None = None,
               expect: str | None = None, request: str = "") -> Path:
    """A wrk Lua script: method, headers and body; counts 200s (whose body contains ``expect``)
    per thread and prints one BENCH_JSON line from done() with wrk's own latency percentiles.
    ``request``: extra Lua, e.g. a ``request()`` that builds each request (a thread's ``tid`` is 1, 2, ...)."""
    lines = [f"wrk.method = {lua_string(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    for k, v in headers.items():
        lines.append(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}")
    lines.append(f"expect = {lua_string(expect) if expect else 'nil'}")
    lines.append("""
ok = 0
bad = 0
local threads = {}
function setup(thread) table.insert(threads, thread); thread:set("tid", #threads) end
function response(status, headers, body)
  if status == 200 and (expect == nil or string.find(body, expect, 1, true)) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local good, wrong = 0, 0
  for _, t in ipairs(threads) do good = good + t:get("ok"); wrong = wrong + t:get("bad") end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, good, wrong, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
""")
    lines.append(request)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --- handler script trees for the routing measurement ------------------------------------------

DUMMY = '''"""A trivial handler generated by bench.run (routing cost)."""
from tigase_rest.handlers import Handler


class Dummy{n}(Handler):
    regex = r"/([^/]+)"
    api_key = False

    def exec_get(self, service, callback, name):
        return "ok"
'''


def real_script_count() -> int:
    return sum(1 for d in SCRIPTS.iterdir() if d.is_dir() and d.name != "static"
               and not d.name.startswith((".", "_")) for _ in d.glob("*.py"))


def scripts_tree(root: Path, total: int) -> tuple[Path, list[str]]:
    """The real scripts plus trivial handlers in their own folders, ``total`` scripts in all
    (at least one dummy). Returns the dir and the dummy folder names."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(SCRIPTS, root, ignore=shutil.ignore_patterns("__pycache__"))
    count = max(1, total - real_script_count())
    names = []
    for i in range(count):
        name = f"dummy{i:04d}"
        (root / name).mkdir()
        (root / name / "dummy.py").write_text(DUMMY.format(n=i), encoding="utf-8")
        names.append(name)
    return root, names


# --- profile analysis -------------------------------------------------------------------------

# Checked from the leaf frame up; the first rule that matches a frame's file names the bucket.
# Generic stdlib modules (re, enum, functools, typing, ...) match nothing and pass the time up.
PROFILE_BUCKETS = [
    ("auth: Basic/API key/credential cache", ("tigase_rest/http/auth.py", "/hmac.py", "/base64.py", "/hashlib.py")),
    ("XML parse/build (xml.etree, expat, defusedxml)", ("xml/etree/", "defusedxml/")),
    ("slixmpp serialise (tostring)", ("slixmpp/xmlstream/tostring",)),
    ("JID parsing (slixmpp.jid)", ("slixmpp/jid.py",)),
    ("aiohttp (HTTP parse, request, response, protocol)", ("aiohttp/", "multidict/", "yarl/")),
    ("slixmpp (stream, stanza objects, handlers)", ("slixmpp/",)),
    ("tigase_rest + handler scripts (own code)", ("tigase_rest/", "/scripts-", "/scripts/rest/")),
    ("logging", ("/logging/",)),
    ("asyncio loop, tasks, futures", ("asyncio/", "/selectors.py", "/socket.py", "/ssl.py")),
]
FRAME = re.compile(r"^(.*) \((.*?):(\d+)\)$")


def classify(frames: list[tuple[str, str]]) -> str:
    """The bucket of one stack (root first). Socket syscalls get their own buckets, split by who
    writes: the time of a send() is mostly the kernel's loopback TCP path, not Python."""
    func, path = frames[-1]
    if path.endswith("asyncio/selector_events.py"):
        if "write" in func.lower():
            if any("slixmpp/" in p for _, p in frames):
                return "socket send(): stanza to the XMPP server"
            return "socket send(): HTTP response"
        if "read_ready" in func:
            return "socket recv()"
    if path.endswith("/selectors.py"):
        return "epoll (non-idle part)"
    for func, path in reversed(frames):
        hit = next((name for name, keys in PROFILE_BUCKETS if any(k in path for k in keys)), None)
        if hit:
            return hit
    return "other"


def analyse_profile(raw: Path, seconds: float, rate: int) -> dict:
    """Buckets of the samples (self time, leaf-up rules) and the top inclusive functions."""
    buckets: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        matches = [FRAME.match(f) for f in stack.split(";")]
        frames = [(m.group(1), m.group(2)) for m in matches if m]
        if not frames:
            continue
        n = int(count)
        total += n
        buckets[classify(frames)] += n
        seen = set()
        for func, path in frames:
            key = f"{func} ({'/'.join(Path(path).parts[-2:])})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    pct = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "busy_fraction": round(total / (seconds * rate), 2) if seconds else None,
        "buckets": {k: pct(v) for k, v in buckets.most_common()},
        "top_inclusive": [(k, pct(v)) for k, v in inclusive.most_common(40)],
    }


# --- the run ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, seconds: int, profile: bool):
        self.work = work
        self.seconds = seconds
        self.profile = profile
        self.logs = work / "logs"
        self.prosody: ProsodyServer | None = None
        self.bob = None
        self.bob_count = 0
        self.component: subprocess.Popen | None = None
        self.component_name = ""
        self.base = ""
        self.children: dict[int, object] = {}  # pid -> Popen / asyncio Process, for cleanup
        self.results: dict = {"seconds": seconds, "concurrency": CONCURRENCY, "scenarios": [], "notes": []}
        self.http: aiohttp.ClientSession | None = None
        self.steps = set(os.environ.get("BENCH_STEPS", "A,C,B,U,W,E,N,R,H").upper().split(","))
        self.extra_pids: dict[str, int] = {}  # other processes measured per scenario (the webhook receiver)
        self.server_pids: dict[str, int] = {}  # the XMPP server(s) measured per scenario: Prosody, or ejabberd in step E

    # --- processes --------------------------------------------------------------------------

    def _kill_children(self) -> None:
        for pid, proc in list(self.children.items()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # each child leads its own session (start_new_session)
            self.children.pop(pid, None)

    async def run_child(self, name: str, cmd: list[str], timeout: float) -> str:
        """Run a command to completion (bounded), its own session; returns stdout, logs both."""
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.children[proc.pid] = proc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            raise
        finally:
            self.children.pop(proc.pid, None)
        text, errors = out.decode(errors="replace"), err.decode(errors="replace")
        (self.logs / f"{name}.out").write_text(f"$ {' '.join(cmd)}\n{text}\n--- stderr ---\n{errors}")
        if proc.returncode != 0:
            raise BenchError(f"{name}: {cmd[0]} exited with {proc.returncode}: {errors.strip()[-500:]}")
        return text

    def start_prosody(self) -> None:
        from bench.scale import COMPONENTS  # step N's instances need their own component blocks

        self.prosody = ProsodyServer(self.work / "prosody", log_level="warn",
                                     more_components=COMPONENTS if "N" in self.steps else ())
        for user, password in USERS.items():
            self.prosody.register(user, password)
        self.prosody.start()
        self.children[self.prosody._proc.pid] = self.prosody._proc  # noqa: SLF001 - for the kill on failure
        self.server_pids = {"prosody": self.prosody_pid}

    @property
    def prosody_pid(self) -> int:
        return self.prosody._proc.pid  # noqa: SLF001

    async def start_component(self, name: str, scripts_dir: Path, extra: dict | None = None,
                              server=None, source: Path = REPO, python_args: tuple[str, ...] = (),
                              python: str = sys.executable) -> None:
        """The component on ``server`` (default: the Prosody), ready once a stream ping answers 200.
        ``source``: the source folder to run it from (bench.ab runs other versions); then only its
        own scripts are served. ``python`` runs it (bench.ab compares interpreters), ``python_args`` go
        before ``-m tigase_rest`` (a profiler)."""
        port = (extra or {}).get("http", {}).get("port") or free_port()  # steps N and E give two the same one
        config = self.work / f"component-{name}.toml"
        settings = {
            "xmpp": {**(server or self.prosody).component_config(), "iq_timeout": 10},
            "http": {"host": "127.0.0.1", "port": port, "scripts_dir": str(scripts_dir),
                     **({} if source == REPO else {"builtin_scripts": False})},
            # max_failures also bounds the logins in progress per client address: step B runs 16 at once.
            "auth": {"api_keys": [API_KEY], "admins": [f"admin@{DOMAIN}"], "max_sessions": MANY_USERS + 100,
                     "max_failures": 100},
            "storage": {"data_dir": str(self.work / f"data-{name}")},
            "log": {"level": "warning"},
        }
        for section, values in (extra or {}).items():  # extra adds sections and keys, or overrides keys
            settings[section] = {**settings.get(section, {}), **values}
        write_toml(config, settings)
        log = open(self.logs / f"component-{name}.log", "wb")
        started = time.monotonic()
        command = [python, *python_args, "-m", "tigase_rest", "--config", str(config)]
        self.component = subprocess.Popen(
            command, cwd=source,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.children[self.component.pid] = self.component
        self.component_name = name
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # HTTP up, then the XMPP link (a stream ping answers 200 only through the link)
            if self.component.poll() is not None:
                raise BenchError(f"component {name} exited with {self.component.returncode}; "
                                 f"see {self.logs / f'component-{name}.log'}")
            if time.monotonic() > deadline:
                raise BenchError(f"component {name} not ready within 30 s")
            if http_status(self.base + "/rest/") == 200:
                status, _ = await self.call("POST", "/rest/stream/", PING_BODY, {"Content-Type": "application/xml"})
                if status == 200:
                    break
            await asyncio.sleep(0.1)
        self.results.setdefault("startup_s", {})[name] = round(time.monotonic() - started, 2)

    def stop_component(self) -> None:
        proc = self.component
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.children.pop(proc.pid, None)
        self.component = None

    async def call(self, method: str, path: str, body: str | None = None, headers: dict | None = None,
                   auth: str | None = ADMIN_AUTH) -> tuple[int, str]:
        hdrs = {"Api-Key": API_KEY, **({"Authorization": auth} if auth else {}), **(headers or {})}
        async with self.http.request(method, self.base + path, data=body, headers=hdrs) as r:
            return r.status, await r.text()

    # --- bob --------------------------------------------------------------------------------

    async def start_bob(self) -> None:
        # The receiver of the direct scenarios (raw socket, a regex over start tags), so that the
        # REST and the direct message scenarios pay the same for the receiving end. Only the REST
        # scenarios send chat messages to this resource.
        self.bob, self.bob_pump = await self.connect_bob(self.prosody.c2s_port)

    async def connect_bob(self, c2s_port: int) -> tuple[direct_client.Conn, asyncio.Future]:
        """bob@DOMAIN/BOB_RESOURCE logged in on ``c2s_port``, counting his chat messages in bob_count."""
        bob = await asyncio.wait_for(direct_client.login(
            "127.0.0.1", c2s_port, DOMAIN, "bob", USERS["bob"], BOB_RESOURCE), 15)

        def on_stanza(name: bytes, _ident: bytes, kind: bytes) -> None:
            if name == b"message" and kind == b"chat":
                self.bob_count += 1

        return bob, asyncio.ensure_future(direct_client.pump(bob, on_stanza))

    async def bob_settled(self, limit: float = 10.0) -> int:
        """bob's count once it stopped growing for 0.5 s (at most ``limit`` s)."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline and last != self.bob_count:
            last = self.bob_count
            await asyncio.sleep(0.5)
        return self.bob_count

    # --- one measured scenario --------------------------------------------------------------

    async def measured(self, coro, *, component: bool = True):
        """Runs ``coro`` and adds CPU use (% of one core) of every process taking part."""
        pids = dict(self.server_pids)
        if component and self.component is not None:
            pids["component"] = self.component.pid
        pids.update(self.extra_pids)
        before = {k: tree_cpu_split(p) for k, p in pids.items()}
        load0, self0, all0, t0 = children_cpu(), self_cpu(), machine_cpu(), time.monotonic()
        result = await coro
        wall = time.monotonic() - t0
        splits = {k: [b - a for a, b in zip(before[k], tree_cpu_split(p))] for k, p in pids.items()}
        used = {k: sum(v) for k, v in splits.items()}
        split = splits.get("component")
        used["load generator"] = children_cpu() - load0
        used["bench+bob"] = self_cpu() - self0
        # Whatever else ran on the machine meanwhile (other jobs compete for the same 2 cores).
        used["others"] = max(0.0, machine_cpu() - all0 - sum(used.values()))
        result["cpu_pct"] = {k: round(100 * v / wall) for k, v in used.items()}
        result["cpu_s"] = {k: round(v, 4) for k, v in used.items()}
        result["cpu_split_s"] = {k: [round(t, 4) for t in v] for k, v in splits.items()}
        # CPU time per answered request: steadier than req/s when other jobs share the cores.
        if result.get("ok"):
            result["cpu_us_per_req"] = {k: round(1e6 * used[k] / result["ok"])
                                        for k in ("component", *self.server_pids, *self.extra_pids) if k in used}
            if split:  # the kernel's share (system time: socket calls, epoll) against Python's (user time)
                result["cpu_us_per_req"]["component user/sys"] = "/".join(
                    str(round(1e6 * t / result["ok"])) for t in split)
        if result["cpu_pct"]["others"] > 25:
            print(f"  warning: other processes used {result['cpu_pct']['others']}% of a core during this "
                  f"scenario: its numbers are lower than on a quiet machine", flush=True)
        if component and self.component is not None:
            mem = memory_kb(self.component.pid)
            result["rss_mb"] = round(mem.get("VmRSS", 0) / 1024, 1)
            result["hwm_mb"] = round(mem.get("VmHWM", 0) / 1024, 1)
        return result

    async def wrk(self, name: str, script: Path, path: str, conns: int, seconds: int, base: str | None = None) -> dict:
        url = (base or self.base) + path
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script), url]
        out = await self.run_child(f"wrk-{name}", cmd, seconds + 30)
        m = re.search(r"^BENCH_JSON (.*)$", out, re.M)
        if not m:
            raise BenchError(f"wrk {name}: no result line; see {self.logs / f'wrk-{name}.out'}")
        w = json.loads(m.group(1))
        secs = w["duration_us"] / 1e6
        return {"rate": w["ok"] / secs, "p50_ms": w["p50_us"] / 1000, "p90_ms": w["p90_us"] / 1000,
                "p99_ms": w["p99_us"] / 1000, "max_ms": w["max_us"] / 1000, "ok": w["ok"],
                "errors": w["bad"] + w["connect"] + w["read"] + w["write"] + w["timeout"], "wrk": w}

    async def rest(self, name: str, label: str, script: Path, path: str, conns: int = CONCURRENCY,
                   seconds: int | None = None, messages: bool = False, record: bool = True,
                   base: str | None = None) -> dict:
        """wrk against the component (or ``base``, another server's URL); ``messages``: count bob's."""
        seconds = seconds or self.seconds
        count0 = self.bob_count
        result = await self.measured(self.wrk(name, script, path, conns, seconds, base))
        if messages:
            delivered = await self.bob_settled() - count0
            result["delivered"] = delivered
            result["lost"] = max(0, result["ok"] - delivered)
        result.update(name=name, label=label, conns=conns, seconds=seconds, via="REST", component=self.component_name)
        if record:
            self.results["scenarios"].append(result)
        print(f"  {label:<44} {fmt_row(result)}", flush=True)
        return result

    async def direct(self, name: str, label: str, mode: str, user: str, conns: int = CONCURRENCY,
                     inflight: int = 1, client: str = "raw", record: bool = True, seconds: int | None = None,
                     component: bool = False) -> dict:
        seconds = seconds or self.seconds
        cmd = [sys.executable, "-m", "bench.direct", "--mode", mode, "--client", client,
               "--port", str(self.prosody.c2s_port), "--domain", DOMAIN, "--user", user, "--password", USERS[user],
               "--rx-user", "bob", "--rx-password", USERS["bob"], "--conns", str(conns),
               "--inflight", str(inflight), "--seconds", str(seconds)]

        async def go():
            out = await self.run_child(f"direct-{name}", cmd, seconds + 60)
            m = re.search(r"^DIRECT_JSON (.*)$", out, re.M)
            if not m:
                raise BenchError(f"direct {name}: no result line")
            d = json.loads(m.group(1))
            return {"rate": d["rate"], "p50_ms": d["p50_ms"], "p90_ms": d["p90_ms"], "p99_ms": d["p99_ms"],
                    "max_ms": d["max_ms"], "ok": d["ops"], "errors": d["errors"], "direct": d}

        result = await self.measured(go(), component=component)
        result.update(name=name, label=label, conns=conns * inflight, seconds=seconds, via=f"direct c2s ({client})")
        if mode == "message":
            result["delivered"] = result["ok"]  # counted on arrival at the receiver
        if record:
            self.results["scenarios"].append(result)
        print(f"  {label:<44} {fmt_row(result)}", flush=True)
        return result

    # --- steps ------------------------------------------------------------------------------

    def write_lua(self) -> None:
        lua = self.work / "lua"
        lua.mkdir(exist_ok=True)
        auth = {"Authorization": ADMIN_AUTH, "Api-Key": API_KEY}
        xml = {**auth, "Content-Type": "application/xml"}
        self.lua_msg = wrk_script(lua / "message.lua", "POST", xml, MSG_BODY)
        self.lua_iq = wrk_script(lua / "iq.lua", "POST", xml, PING_BODY, expect="result")
        self.lua_adhoc = wrk_script(lua / "adhoc.lua", "GET", auth, expect="admin#")
        self.lua_dummy = wrk_script(lua / "dummy.lua", "GET", {})
        # Accounts with the API key alone (no login: the component runs the commands as itself).
        key = {"Api-Key": API_KEY}
        self.lua_user_get = wrk_script(lua / "user-get.lua", "GET", key, expect=f"alice@{DOMAIN}")
        # A new account per request: <prefix><thread>_<counter>@domain; the prefix is unique per run.
        self.user_prefix = f"n{os.getpid() % 10000}x{int(time.time()) % 100000}t"
        self.lua_user_put = wrk_script(
            lua / "user-put.lua", "PUT", {**key, "Content-Type": "application/json"},
            json.dumps({"user": {"password": "benchpass"}}), expect=DOMAIN, request=f"""
counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, string.format("/rest/user/{self.user_prefix}%d_%d@{DOMAIN}", tid, counter))
end
""")

    async def step_a(self, scripts10: Path, dummy10: str) -> None:
        print(f"[A] component with {HANDLERS[0]} handler scripts: REST vs direct at c{CONCURRENCY}, "
              f"{self.seconds} s each", flush=True)
        await self.start_component("A", scripts10)
        # Warm-up (not recorded): the admin's login gets cached, code paths and pools get warm.
        await self.rest("warmup", "warm-up (not recorded)", self.lua_msg, "/rest/stream/", seconds=2,
                        messages=True, record=False)
        await self.rest("rest_message", "1. POST /rest/stream message -> bob", self.lua_msg, "/rest/stream/",
                        messages=True)
        await self.rest("rest_iq", "2. POST /rest/stream IQ ping (round trip)", self.lua_iq, "/rest/stream/")
        await self.rest("rest_adhoc", f"3. GET /rest/adhoc/{DOMAIN} (cached caller)", self.lua_adhoc,
                        f"/rest/adhoc/{DOMAIN}")
        await self.direct("direct_message", "4a. direct c2s: message -> bob", "message", "alice")
        await self.direct("direct_ping", "4b. direct c2s: IQ ping (round trip)", "ping", "alice")
        await self.direct("direct_commands", "4c. direct c2s: disco#items commands (admin)", "commands", "admin")
        # The same pings, two other shapes: one stream with 16 in flight (how the component link
        # carries them: the server's best case), and one slixmpp client (a typical Python client).
        await self.direct("direct_ping_1x16", "4d. direct c2s: IQ ping, 1 stream x 16", "ping", "alice",
                          conns=1, inflight=CONCURRENCY)
        await self.direct("direct_ping_slixmpp", "4e. direct slixmpp client: IQ ping, 16 tasks", "ping", "alice",
                          client="slixmpp")
        await self.ratio_rounds()
        print("[A] how cost grows: scenario 1 at concurrency " + "/".join(map(str, GROWTH)), flush=True)
        for c in GROWTH:
            if c == CONCURRENCY:
                continue
            await self.rest(f"rest_message_c{c}", f"1. message at c{c}", self.lua_msg, "/rest/stream/",
                            conns=c, messages=True)
        await self.rest("rest_trivial_10", f"GET trivial handler ({HANDLERS[0]} scripts)", self.lua_dummy,
                        f"/rest/{dummy10}/x")
        if self.profile:
            await self.profile_runs()
        if "B" in self.steps:
            await self.create_users()
        self.stop_component()

    async def ratio_rounds(self) -> None:
        """REST and direct back to back, RATIO_ROUNDS times, the order flipped every round."""
        if RATIO_ROUNDS < 1:
            return
        print(f"[A] REST/direct in {RATIO_ROUNDS} interleaved rounds", flush=True)
        rounds = self.results["ratio_rounds"] = []
        for n in range(RATIO_ROUNDS):
            row = {}
            for what, rest_name, direct_name in RATIO_PAIRS:
                async def rest():
                    if what == "message":
                        return await self.rest(f"{rest_name}_r{n}", f"  round {n + 1}: REST {what}", self.lua_msg,
                                               "/rest/stream/", messages=True, record=False)
                    return await self.rest(f"{rest_name}_r{n}", f"  round {n + 1}: REST {what}", self.lua_iq,
                                           "/rest/stream/", record=False)

                async def direct():
                    return await self.direct(f"{direct_name}_r{n}", f"  round {n + 1}: direct {what}",
                                             "message" if what == "message" else "ping", "alice", record=False)

                if n % 2:
                    d, r = await direct(), await rest()
                else:
                    r, d = await rest(), await direct()
                row[what] = {"rest": round(r["rate"]), "direct": round(d["rate"]),
                             "ratio": r["rate"] / d["rate"] if d["rate"] else 0.0,
                             "lost": r.get("lost", 0)}
            rounds.append(row)

    async def profile_runs(self) -> None:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(pyspy).exists() and not shutil.which("py-spy"):
            self.results["notes"].append("py-spy not installed: no profile")
            print("  (py-spy not installed: no profile)", flush=True)
            return
        rate = 200
        self.results["profiles"] = {}
        for name, script, messages in (("rest_message", self.lua_msg, True), ("rest_iq", self.lua_iq, False)):
            raw = self.work / f"profile-{name}.txt"
            cmd = [pyspy, "record", "--pid", str(self.component.pid), "--duration", str(self.seconds),
                   "--rate", str(rate), "--format", "raw", "--full-filenames", "--nonblocking", "-o", str(raw)]
            spy = asyncio.ensure_future(self.run_child(f"py-spy-{name}", cmd, self.seconds + 60))
            await asyncio.sleep(0.5)  # py-spy attaches
            run = await self.rest(f"profiled_{name}", f"under py-spy: {name}", script, "/rest/stream/",
                                  messages=messages, record=False)
            await spy
            analysis = analyse_profile(raw, self.seconds, rate)
            analysis["rate_under_profiler"] = round(run["rate"])
            self.results["profiles"][name] = analysis
            print(f"  profile {name}: {analysis['samples']} samples, main thread busy "
                  f"{analysis['busy_fraction']:.0%} of the time", flush=True)
            for bucket, pct in analysis["buckets"].items():
                print(f"      {pct:5.1f}%  {bucket}")

    async def create_users(self) -> None:
        """MANY_USERS accounts through the admin add-user command over REST (no prosodyctl per user)."""
        t0 = time.monotonic()
        sem = asyncio.Semaphore(8)
        failures = []

        async def add(i: int) -> None:
            body = json.dumps({"command": {"node": "http://jabber.org/protocol/admin#add-user", "fields": [
                {"var": "accountjid", "value": f"u{i}@{DOMAIN}"}, {"var": "password", "value": f"p{i}"},
                {"var": "password-verify", "value": f"p{i}"}]}})
            async with sem:
                status, text = await self.call("POST", f"/rest/adhoc/{DOMAIN}", body,
                                               {"Content-Type": "application/json"})
            if status != 200 or '"error"' in text.lower():
                failures.append((i, status, text[:200]))

        await asyncio.gather(*(add(i) for i in range(MANY_USERS)))
        if failures:
            raise BenchError(f"{len(failures)} add-user commands failed, e.g. {failures[0]}")
        secs = time.monotonic() - t0
        self.results["users_created"] = {"count": MANY_USERS, "seconds": round(secs, 1)}
        print(f"[A] created {MANY_USERS} users with admin#add-user over REST in {secs:.1f} s", flush=True)

    async def step_c(self, scripts1000: Path, dummy1000: str) -> None:
        print(f"[C] component with {HANDLERS[1]} handler scripts", flush=True)
        await self.start_component("C", scripts1000)
        mem = memory_kb(self.component.pid)
        self.results["rss_1000_handlers_mb"] = round(mem.get("VmRSS", 0) / 1024, 1)
        await self.rest("rest_trivial_1000", f"GET trivial handler ({HANDLERS[1]} scripts)", self.lua_dummy,
                        f"/rest/{dummy1000}/x")
        self.stop_component()

    async def step_b(self, scripts10: Path) -> None:
        print(f"[B] fresh component: memory with 1 and with {MANY_USERS} pooled caller sessions", flush=True)
        await self.start_component("B", scripts10)
        pid = self.component.pid
        status, _ = await self.call("GET", f"/rest/adhoc/{DOMAIN}")
        if status != 200:
            raise BenchError(f"admin GET /rest/adhoc/{DOMAIN}: {status}")
        await asyncio.sleep(1)
        one = memory_kb(pid)
        t0 = time.monotonic()
        sem = asyncio.Semaphore(CONCURRENCY)
        statuses: Counter = Counter()

        async def log_in(i: int) -> None:
            async with sem:
                status, _ = await self.call("GET", f"/rest/adhoc/{DOMAIN}", auth=basic(f"u{i}", f"p{i}"))
            statuses[status] += 1

        await asyncio.gather(*(log_in(i) for i in range(MANY_USERS)))
        secs = time.monotonic() - t0
        await asyncio.sleep(1)
        many = memory_kb(pid)
        health = {}
        status, text = await self.call("GET", "/rest/health?type=application/json")
        if status == 200:
            with contextlib.suppress(ValueError, KeyError):
                health = json.loads(text)["health"]
        sessions = health.get("caller_sessions")
        per = (many["VmRSS"] - one["VmRSS"]) * 1024 / MANY_USERS
        self.results["memory"] = {
            "rss_1_session_mb": round(one["VmRSS"] / 1024, 1), f"rss_{MANY_USERS}_sessions_mb": round(many["VmRSS"] / 1024, 1),
            "hwm_mb": round(many["VmHWM"] / 1024, 1), "bytes_per_session": round(per),
            "logins_ok": statuses.get(200, 0), "statuses": dict(statuses), "pooled_sessions": sessions,
            "login_seconds": round(secs, 1), "logins_per_s": round(MANY_USERS / secs, 1),
        }
        print(f"  RSS with 1 session {one['VmRSS'] / 1024:.1f} MB; with {MANY_USERS} more "
              f"{many['VmRSS'] / 1024:.1f} MB (peak {many['VmHWM'] / 1024:.1f} MB): {per / 1024:.1f} KiB per session; "
              f"{statuses.get(200, 0)} logins OK in {secs:.1f} s ({MANY_USERS / secs:.0f}/s), "
              f"pooled sessions reported: {sessions}", flush=True)
        await self.rest(f"rest_message_{MANY_USERS}_sessions", f"1. message, {MANY_USERS} sessions pooled",
                        self.lua_msg, "/rest/stream/", seconds=max(2, self.seconds // 2), messages=True)
        self.stop_component()

    async def step_accounts(self, scripts10: Path) -> None:
        """(U) issue 14: /rest/user/{jid} with the API key alone: XEP-0133 commands over the component link."""
        print(f"[U] accounts: PUT and GET /rest/user/{{jid}}, API key alone, c{CONCURRENCY}", flush=True)
        await self.start_component("U-accounts", scripts10)
        status, text = await self.call("GET", f"/rest/user/alice@{DOMAIN}", auth=None)
        if status != 200:
            raise BenchError(f"GET /rest/user/alice@{DOMAIN} with the API key: {status} {text[:200]}")
        await self.rest("rest_user_get", "5a. GET /rest/user/{jid} (user-stats)", self.lua_user_get,
                        f"/rest/user/alice@{DOMAIN}")
        run = await self.rest("rest_user_put", "5b. PUT /rest/user/{new jid} (add-user)", self.lua_user_put,
                              "/rest/user/")
        # The accounts exist: the first one wrk sent (wrk calls request() once before it starts
        # sending, so that is counter 2) answers user-stats.
        if run["ok"]:
            jid = f"{self.user_prefix}1_2@{DOMAIN}"
            status, text = await self.call("GET", f"/rest/user/{jid}", auth=None)
            if status != 200:
                raise BenchError(f"account {jid} created by PUT is not there: {status} {text[:200]}")
        self.stop_component()

    async def step_webhook(self, scripts10: Path) -> None:
        """(W) issue 15: a webhook bot's messages/s, client -> server -> component -> HTTP -> reply -> client."""
        print(f"[W] webhook bot: {CONCURRENCY} c2s sessions x 1 message in flight to echo@http.{DOMAIN}, "
              f"a local receiver answering {{\"body\": \"echo\"}}", flush=True)
        note = mod_rest_note("its callback", "its webhook callback could not be measured beside the bot")
        self.results["notes"].append(note)
        print(f"  {note}", flush=True)
        port = free_port()
        with open(self.logs / "webhook-receiver.log", "wb") as log:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "bench.webhook_receiver", "--port", str(port)], cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[receiver.pid] = receiver
        try:
            deadline = time.monotonic() + 15
            while http_status(f"http://127.0.0.1:{port}/") != 200:
                if receiver.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the webhook receiver did not start; see {self.logs / 'webhook-receiver.log'}")
                await asyncio.sleep(0.1)
            await self.start_component("W", scripts10, {"webhooks": {"url": f"http://127.0.0.1:{port}/"}})
            self.extra_pids = {"receiver": receiver.pid}
            await self.direct("webhook_warmup", "warm-up (not recorded)", "bot", "alice", seconds=2,
                              component=True, record=False)
            before = await self.health()
            res = await self.direct("webhook_bot", "6. webhook bot, msg/s: c2s -> bot -> c2s", "bot",
                                    "alice", component=True)
            after = await self.health()
            counts = {k: after.get(k, 0) - before.get(k, 0) for k in ("webhook_delivered", "webhook_retries",
                                                                      "webhook_bounced")}
            res["webhook"] = {**counts, "queue_after": after.get("webhook_queue")}
            print(f"  webhook counters: {counts['webhook_delivered']} posted and answered, "
                  f"{counts['webhook_retries']} retries, {counts['webhook_bounced']} bounced, queue after "
                  f"{after.get('webhook_queue')}; {res['ok']} replies counted, {res['direct']['late']} after the "
                  f"deadline, {res['errors']} errors", flush=True)
        finally:
            self.extra_pids = {}
            self.stop_component()
            if receiver.poll() is None:
                receiver.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    receiver.wait(5)
            if receiver.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(receiver.pid, signal.SIGKILL)
                receiver.wait(5)
            self.children.pop(receiver.pid, None)

    async def health(self) -> dict:
        status, text = await self.call("GET", "/rest/health?type=application/json")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if status == 200:
                return json.loads(text)["health"]
        return {}

    def step_routing(self, scripts: dict[int, tuple[Path, list[str]]]) -> None:
        from tigase_rest.loader import load_routes

        print("[R] RouteTable.resolve in-process (timeit)", flush=True)
        out = {}
        for n, (root, dummies) in scripts.items():
            t0 = time.perf_counter()
            table = load_routes(root)
            load_s = time.perf_counter() - t0
            routes = len(table.routes())
            paths = {"hit /stream/": "/stream/", f"hit /{dummies[-1]}/x": f"/{dummies[-1]}/x",
                     f"hit /adhoc/{DOMAIN}": f"/adhoc/{DOMAIN}", "miss /nosuch/x": "/nosuch/x"}
            row = {"routes": routes, "load_s": round(load_s, 3)}
            for label, path in paths.items():
                number = 200_000
                best = min(timeit.repeat(lambda p=path: table.resolve(p), number=number, repeat=3))
                row[label.split(" ")[0] + " " + ("dummy" if "dummy" in label else label.split(" ")[1])] = \
                    round(best / number * 1e9)
            out[n] = row
            print(f"  {n:>5} scripts ({routes} routes, loaded in {load_s:.2f} s): " +
                  ", ".join(f"{k} {v} ns" for k, v in row.items() if k not in ("routes", "load_s")), flush=True)
        self.results["routing"] = out

    async def step_http_server(self) -> None:
        """(H) low-level web.Server vs web.Application (issue 10, item 7): no Prosody, no component."""
        from bench import http_server

        seconds = int(os.environ.get("BENCH_HTTP_SECONDS", "2"))
        rounds = http_server.default_rounds()
        print(f"[H] aiohttp low-level web.Server vs web.Application: {rounds} interleaved rounds of {seconds} s "
              f"per server and path", flush=True)
        by = {s["name"]: s for s in self.results["scenarios"]}
        reference = {what: by[name]["cpu_us_per_req"]["component"] for what, name in
                     (("message", "rest_message"), ("IQ", "rest_iq")) if "component" in by.get(name, {}).get("cpu_us_per_req", {})}
        source = "this run's scenarios 1 and 2" if len(reference) == 2 else None
        res = await http_server.measure(self.logs, seconds, rounds, reference if source else None,
                                        source or http_server.REFERENCE_SOURCE, registry=self.children)
        self.results["http_server"] = res
        print(http_server.report(res), flush=True)

    async def run(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        t_start = time.monotonic()
        print(f"bench: work dir {self.work}; {self.seconds} s per scenario; 2 cores shared by everything",
              flush=True)
        wait = float(os.environ.get("BENCH_WAIT_QUIET", "0") or 0)
        busy = await asyncio.to_thread(wait_for_quiet, wait) if wait > 0 else None
        if busy is not None:
            print(f"bench: machine {busy:.0%} busy before the start", flush=True)
        await asyncio.to_thread(self.start_prosody)
        self.results["prosody_auth"] = self.prosody.auth
        self.results["git"] = git_revision()
        await self.start_bob()
        scripts = {n: scripts_tree(self.work / f"scripts-{n}", n) for n in HANDLERS}
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), trust_env=False)
        self.write_lua()
        try:
            if "A" in self.steps:
                await self.step_a(scripts[HANDLERS[0]][0], scripts[HANDLERS[0]][1][0])
            if "C" in self.steps:
                await self.step_c(scripts[HANDLERS[1]][0], scripts[HANDLERS[1]][1][len(scripts[HANDLERS[1]][1]) // 2])
            if "B" in self.steps:
                if "A" not in self.steps:  # the users come from step A otherwise
                    await self.start_component("U", scripts[HANDLERS[0]][0])
                    await self.create_users()
                    self.stop_component()
                await self.step_b(scripts[HANDLERS[0]][0])
            if "U" in self.steps:
                await self.step_accounts(scripts[HANDLERS[0]][0])
            if "W" in self.steps:
                await self.step_webhook(scripts[HANDLERS[0]][0])
            if "E" in self.steps:
                from bench import peer

                await peer.step_peer(self, scripts[HANDLERS[0]][0])
            if "N" in self.steps:
                from bench.scale import step_scale

                await step_scale(self, scripts[HANDLERS[0]][0])
        finally:
            await self.http.close()
        if "R" in self.steps:
            self.step_routing(scripts)
        if "H" in self.steps:
            await self.step_http_server()
        self.results["total_s"] = round(time.monotonic() - t_start)
        (self.work / "results.json").write_text(json.dumps(self.results, indent=2))
        print(report(self.results), flush=True)
        print(f"bench: done in {self.results['total_s']} s; details in {self.work / 'results.json'}, "
              f"logs in {self.logs}", flush=True)

    async def close(self) -> None:
        self.stop_component()
        if self.bob is not None:
            self.bob_pump.cancel()
            with contextlib.suppress(Exception):
                self.bob.close()
        if self.prosody is not None:
            await asyncio.to_thread(self.prosody.stop)
        self._kill_children()


# --- report -----------------------------------------------------------------------------------


def fmt_row(r: dict) -> str:
    s = f"{r['rate']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
    if "delivered" in r and r.get("via") == "REST":
        s += f"  delivered {r['delivered']}/{r['ok']}"
    if r.get("errors"):
        s += f"  errors {r['errors']}"
    if "hwm_mb" in r:
        s += f"  RSS {r['rss_mb']} MB (peak {r['hwm_mb']})"
    cpu = r.get("cpu_pct", {})
    s += "  CPU% " + " ".join(f"{k} {v}" for k, v in cpu.items())
    per = r.get("cpu_us_per_req", {})
    if per:
        s += "  CPU us/req " + " ".join(f"{k} {v}" for k, v in per.items())
    return s


def report(res: dict) -> str:
    by = {s["name"]: s for s in res["scenarios"]}
    lines = ["", "=" * 100, f"Results ({res['seconds']} s per scenario, concurrency {res['concurrency']}, "
             f"Prosody auth {res.get('prosody_auth')}, commit {res.get('git')})", "=" * 100]
    head = f"{'scenario':<46}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'peak RSS':>10}{'REST/direct':>13}"
    lines += [head, "-" * len(head)]
    pairs = {"rest_message": "direct_message", "rest_iq": "direct_ping", "rest_adhoc": "direct_commands"}
    order = ["rest_message", "rest_iq", "rest_adhoc", "direct_message", "direct_ping", "direct_commands",
             "direct_ping_1x16", "direct_ping_slixmpp"]
    order += [s["name"] for s in res["scenarios"] if s["name"] not in order]
    for name in order:
        s = by.get(name)
        if not s:
            continue
        ratio = ""
        if name in pairs and pairs[name] in by and by[pairs[name]]["rate"]:
            ratio = f"{100 * s['rate'] / by[pairs[name]]['rate']:.0f}%"
        rss = f"{s['hwm_mb']} MB" if "hwm_mb" in s else "-"
        label = s["label"]
        if "delivered" in s and s["via"] == "REST":
            label += f" [{s['delivered']}/{s['ok']} delivered]"
        lines.append(f"{label:<46.46}{s['rate']:>9.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{rss:>10}{ratio:>13}")
    iq = by.get("rest_iq")
    shapes = [(n, by[n]) for n in ("direct_ping", "direct_ping_1x16", "direct_ping_slixmpp") if n in by]
    if iq and shapes:
        lines.append("REST IQ ping vs direct pings: " + ", ".join(
            f"{s['label'].split(': ', 1)[-1]} {100 * iq['rate'] / s['rate']:.0f}%" for _, s in shapes if s["rate"]))
    for what, line in ratio_summary(res).items():
        lines.append(f"REST/direct {what}, interleaved rounds: {line['text']}")
    lines.append("")
    lines.append("CPU use per scenario (% of one core; 2 cores in all) | CPU time per request (us):")
    for name in order:
        s = by.get(name)
        if s:
            per = s.get("cpu_us_per_req", {})
            lines.append(f"  {s['label'][:44]:<46}" + "  ".join(f"{k} {v}" for k, v in s["cpu_pct"].items())
                         + ("  | " + "  ".join(f"{k} {v}" for k, v in per.items()) if per else ""))
    mem = res.get("memory")
    if mem:
        lines.append("")
        lines.append(f"Memory: RSS {mem['rss_1_session_mb']} MB with 1 caller session, "
                     f"{mem[f'rss_{MANY_USERS}_sessions_mb']} MB with {MANY_USERS} more (peak {mem['hwm_mb']} MB): "
                     f"{mem['bytes_per_session']} bytes per session; {mem['logins_ok']} cold logins at "
                     f"{mem['logins_per_s']}/s")
    if "rss_1000_handlers_mb" in res:
        lines.append(f"RSS right after start with {HANDLERS[1]} handler scripts: {res['rss_1000_handlers_mb']} MB")
    rt = res.get("routing")
    if rt:
        lines.append("Routing, RouteTable.resolve (ns per call, in-process timeit): " + "; ".join(
            f"{n} scripts: " + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("routes", "load_s"))
            for n, row in rt.items()))
    if "http_server" in res:
        from bench import http_server

        lines.append(http_server.report(res["http_server"]))
    if "peer" in res:
        from bench import peer

        lines.append(peer.report(res["peer"]))
    if "scale" in res:
        from bench import scale

        lines.append(scale.report(res["scale"]))
    lines.append("")
    lines.append(TARGETS_TEXT)
    for text, ok in targets(res):
        lines.append(f"  [{'met' if ok else 'NOT met'}] {text}")
    return "\n".join(lines)


def ratio_summary(res: dict) -> dict[str, dict]:
    """Per traffic kind: the median REST/direct ratio of the interleaved rounds, and the text for it."""
    out = {}
    for what, _, _ in RATIO_PAIRS:
        rows = [r[what] for r in res.get("ratio_rounds", []) if what in r]
        if not rows:
            continue
        ratios = sorted(r["ratio"] for r in rows)
        median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
        out[what] = {"median": median, "text": f"median {median:.0%} (" + ", ".join(
            f"{r['rest']}/{r['direct']} = {r['ratio']:.0%}" for r in rows) + ")"}
    return out


def targets(res: dict) -> list[tuple[str, bool]]:
    by = {s["name"]: s for s in res["scenarios"]}
    out = []
    m, i = by.get("rest_message"), by.get("rest_iq")
    if m:
        out.append((f"message POST {m['rate']:.0f} req/s >= 2,000", m["rate"] >= 2000))
        out.append((f"message p99 {m['p99_ms']:.1f} ms < 20 ms at c16", m["p99_ms"] < 20))
        if "delivered" in m:
            out.append((f"every accepted message delivered ({m['delivered']}/{m['ok']})", m["lost"] == 0))
    if i:
        out.append((f"IQ POST {i['rate']:.0f} req/s >= 1,700", i["rate"] >= 1700))
        out.append((f"IQ p99 {i['p99_ms']:.1f} ms < 20 ms at c16", i["p99_ms"] < 20))
    medians = ratio_summary(res)
    for what, rest, direct in RATIO_PAIRS:
        if what in medians:  # the interleaved rounds: steadier than the single pair above
            ratio = medians[what]["median"]
            out.append((f"REST {what} is {ratio:.0%} of direct (median of the interleaved rounds; >= 70%)",
                        ratio >= 0.7))
        elif rest in by and direct in by and by[direct]["rate"]:
            ratio = by[rest]["rate"] / by[direct]["rate"]
            out.append((f"{rest} is {ratio:.0%} of {direct} (>= 70%)", ratio >= 0.7))
    for row in res.get("ratio_rounds", []):
        if row.get("message", {}).get("lost"):
            out.append((f"a REST message round lost {row['message']['lost']} messages", False))
    mem = res.get("memory")
    if mem:
        peak = mem["hwm_mb"]
        loaded = by.get(f"rest_message_{MANY_USERS}_sessions")
        if loaded:
            peak = max(peak, loaded["hwm_mb"])
        out.append((f"peak RSS {peak} MB < 80 MB with {MANY_USERS} sessions", peak < 80))
    rt = res.get("routing")
    if rt and len(rt) == 2:
        (n1, r1), (n2, r2) = rt.items()
        key = next(k for k in r1 if k.startswith("hit dummy"))
        grow = r2[key] / r1[key]
        out.append((f"routing: resolve {r1[key]} ns with {n1} scripts, {r2[key]} ns with {n2} "
                    f"(x{grow:.2f} for x{n2 // n1} scripts: not linear)", grow < 2))
    t10, t1000 = by.get("rest_trivial_10"), by.get("rest_trivial_1000")
    if t10 and t1000:
        out.append((f"trivial GET {t10['rate']:.0f} req/s with {HANDLERS[0]} scripts, {t1000['rate']:.0f} with "
                    f"{HANDLERS[1]} (within 15%)", t1000["rate"] >= 0.85 * t10["rate"]))
    return out


# --- entry point ------------------------------------------------------------------------------


async def main_async(bench: Bench) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await asyncio.wait_for(bench.run(), OVERALL_TIMEOUT)
    finally:
        await bench.close()


def main() -> int:
    if not shutil.which("wrk"):
        print("bench: wrk is not installed (as root: apt-get install -y wrk)", file=sys.stderr)
        return 1
    seconds_text = os.environ.get("BENCH_SECONDS", "10")
    if not seconds_text.isdigit() or not 1 <= int(seconds_text) <= 300:
        print(f"bench: BENCH_SECONDS must be an integer 1..300, not {seconds_text!r}", file=sys.stderr)
        return 2
    work = Path(os.environ.get("BENCH_DIR", REPO / "run" / "bench")).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(work, int(seconds_text), os.environ.get("BENCH_PROFILE", "1") != "0")
    try:
        asyncio.run(main_async(bench))
    except (BenchError, RuntimeError, ConnectionError, OSError) as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except asyncio.TimeoutError:
        print(f"bench: FAILED: the whole run took over {OVERALL_TIMEOUT} s", file=sys.stderr)
        return 1
    finally:
        bench._kill_children()  # noqa: SLF001 - the last resort, by PID
    return 0


if __name__ == "__main__":
    sys.exit(main())
