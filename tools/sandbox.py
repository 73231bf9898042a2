"""``make run``: a throwaway Prosody, tigase-rest in front of it and bob online, until Ctrl-C.

    python -m tools.sandbox

Everything lives in ./run of the repo (Prosody's data is wiped at each start). The component
runs as a child process with its output in this terminal; every message bob receives is
printed, so a ``curl`` to ``/rest/stream`` can be seen arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from slixmpp.stanza import Message
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tools.prosody import (
    ProsodyServer,
    http_status,
    is_privilege_notice,
    login,
    logout,
    plain_client,
    write_toml,
)

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / "run"
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
API_KEY = "sandbox-key"
COMPONENT_START_TIMEOUT = 15
COMPONENT_STOP_TIMEOUT = 10


class SandboxError(Exception):
    """A step failed; the message says which and why."""


def _http_port() -> int:
    text = os.environ.get("SANDBOX_HTTP_PORT", "8080")
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SandboxError(f"SANDBOX_HTTP_PORT must be a TCP port, not {text!r}")
    port = int(text)
    # Checked up front: otherwise the readiness wait below could be answered by whatever
    # already listens there. SO_REUSEADDR as a server sets it, so that leftover TIME_WAIT
    # connections from an earlier run do not count as "in use".
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise SandboxError(f"127.0.0.1:{port} is in use; set SANDBOX_HTTP_PORT to another port") from None
    return port


def _start_prosody() -> ProsodyServer:
    workdir = RUN_DIR / "prosody"
    shutil.rmtree(workdir, ignore_errors=True)
    prosody = ProsodyServer(workdir)
    for user, password in USERS.items():
        prosody.register(user, password)
    prosody.start()
    return prosody


def _write_config(prosody: ProsodyServer, http_port: int) -> Path:
    path = RUN_DIR / "config.toml"
    write_toml(
        path,
        {
            "xmpp": prosody.component_config(),
            "http": {"host": "127.0.0.1", "port": http_port, "scripts_dir": str(REPO / "scripts" / "rest")},
            "auth": {"api_keys": [API_KEY], "admins": ["admin@localhost"]},
        },
    )
    return path


def _start_component(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tigase_rest", "--config", str(config_path)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        # Its own session: Ctrl-C reaches only the sandbox, which then stops things in order.
        start_new_session=True,
    )


def _wait_for_http(component: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + COMPONENT_START_TIMEOUT
    while http_status(url) is None:
        if component.poll() is not None:
            raise SandboxError(f"the component exited with code {component.returncode} while starting (its output is above)")
        if time.monotonic() > deadline:
            raise SandboxError(f"the component did not answer {url} within {COMPONENT_START_TIMEOUT} s")
        time.sleep(0.1)


def _stop_component(component: subprocess.Popen) -> None:
    if component.poll() is None:
        component.terminate()
        try:
            component.wait(COMPONENT_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"sandbox: the component ignored SIGTERM for {COMPONENT_STOP_TIMEOUT} s; killing it", file=sys.stderr)
            component.kill()
            component.wait(5)
    print(f"sandbox: component exited with code {component.returncode}", file=sys.stderr)


def _print_message(msg: Message) -> None:
    if not is_privilege_notice(msg):
        print(f"bob received from {msg['from']}: {msg['body']}", flush=True)


def _examples(base: str) -> str:
    admin = f"-u admin@localhost:{USERS['admin']}"
    auth = f"{admin} -H 'Api-Key: {API_KEY}'"
    return f"""
tigase-rest is up at {base}/rest/ (config: {RUN_DIR / 'config.toml'})
XMPP users: admin@localhost/{USERS['admin']}, alice@localhost/{USERS['alice']}, bob@localhost/{USERS['bob']} (bob is online)

# send bob a message (the stanza is XML, UTF-8)
curl {auth} -H 'Content-Type: application/xml' \\
  --data '<message type="chat" to="bob@localhost"><body>Hello Bob</body></message>' {base}/rest/stream/
# ping the server, API key as a URL parameter: an IQ without "from" returns the reply
curl {admin} -H 'Content-Type: application/xml' \\
  --data '<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>' '{base}/rest/stream/?api-key={API_KEY}'
# the index page
curl {base}/rest/
# the ad-hoc commands on localhost, as admin; then the same in JSON
curl {auth} {base}/rest/adhoc/localhost
curl {auth} -H 'Accept: application/json' {base}/rest/adhoc/localhost

Ctrl-C stops everything.
"""


async def _run() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    http_port = _http_port()
    base = f"http://127.0.0.1:{http_port}"
    # Cleanup runs in reverse: the component, then bob, then Prosody.
    async with contextlib.AsyncExitStack() as stack:
        prosody = await asyncio.to_thread(_start_prosody)
        stack.callback(prosody.stop)
        print(f"sandbox: Prosody is up (c2s {prosody.c2s_port}, log {prosody.log_path})", file=sys.stderr)

        # Bob logs in before the component starts, so that he is still online while it shuts down.
        bob = plain_client("bob@localhost/sandbox", USERS["bob"])
        # A raw handler: the "message" event skips messages without a <body>, and errors.
        bob.register_handler(Callback("sandbox messages", MatchXPath("{jabber:client}message"), _print_message))
        await login(bob, "127.0.0.1", prosody.c2s_port)
        stack.push_async_callback(logout, bob)
        bob.send_presence()

        component = _start_component(_write_config(prosody, http_port))
        stack.callback(_stop_component, component)
        await asyncio.to_thread(_wait_for_http, component, f"{base}/rest/")
        print(_examples(base), flush=True)

        while not stop.is_set():
            if component.poll() is not None:
                raise SandboxError(f"the component exited with code {component.returncode} (its output is above)")
            if not prosody.running:
                raise SandboxError(f"Prosody died; its log ends with:\n{prosody.log_tail()}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


def main() -> int:
    try:
        asyncio.run(_run())
    except (SandboxError, RuntimeError, ConnectionError, OSError, subprocess.SubprocessError) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
