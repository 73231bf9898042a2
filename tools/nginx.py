"""A throwaway nginx load balancer in front of several tigase-rest instances (scale-out test, bench).

:func:`site_config` is the part an operator copies: the README's "Scaling out" section shows its
output (tests/unit/test_docs_scale_out.py keeps the two the same). :class:`NginxServer` wraps it
in a minimal nginx.conf in a temp dir and runs ``nginx -g 'daemon off;'`` in the foreground, as
``www-data`` when started as root (installed with apt when missing).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

from tools.process import end
from tools.prosody import free_port

APT_INSTALL = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx"
RUN_AS = "www-data"


def site_config(instances: list[str], listen: str = "80", upstream: str = "tigase_rest") -> str:
    """The ``upstream`` and ``server`` blocks (inside nginx's ``http {}``) for ``instances``
    (``host:port`` of each tigase-rest)."""
    servers = "".join(f"    server {address} max_fails=1 fail_timeout=5s;\n" for address in instances)
    return f"""\
upstream {upstream} {{
{servers}    keepalive 64;  # kept-alive connections to the instances
}}

server {{
    listen {listen};
    client_max_body_size 1m;  # = [http] max_body_bytes

    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;  # [http] trusted_proxies
        proxy_set_header X-Forwarded-Proto $scheme;
        # An instance that is down, or whose XMPP link is down (503): the request goes to the next
        # one. nginx does this for GET, HEAD, PUT, DELETE and OPTIONS only; a POST already sent to an
        # instance that failed is never sent again: the client gets 502 and decides.
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 2;
        proxy_connect_timeout 2s;
        proxy_read_timeout 45s;  # longer than [xmpp] iq_timeout: a 504 from the API is an answer
    }}
}}
"""


def _have_nginx() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def ensure_nginx() -> str:
    if not _have_nginx():
        if os.geteuid() != 0:
            raise RuntimeError(f"nginx is not installed; run as root: {APT_INSTALL}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "nginx"]):
            subprocess.run(cmd, env=env, check=True, timeout=900)
        if not _have_nginx():
            raise RuntimeError(f"nginx still missing after: {APT_INSTALL}")
    return shutil.which("nginx") or "/usr/sbin/nginx"


_MAIN = """\
# Written by tools.nginx: a throwaway load balancer, loopback only.
pid {workdir}/nginx.pid;
worker_processes 1;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreamlog '$request_method $uri $status upstream=$upstream_addr upstream_status=$upstream_status';
    access_log {workdir}/access.log upstreamlog;
    client_body_temp_path {workdir}/tmp/body;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;

{site}}}
"""


class NginxServer:
    def __init__(self, instances: list[str]) -> None:
        self.instances = instances
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="tigase-rest-nginx-"))
        self.config_path = self.workdir / "nginx.conf"
        self._proc: subprocess.Popen | None = None
        self._run_as = RUN_AS if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> None:
        nginx = ensure_nginx()
        (self.workdir / "tmp").mkdir()
        site = site_config(self.instances, f"127.0.0.1:{self.port}")
        # log_format must come before its use: swap the two lines written above.
        indented = "".join("    " + line if line.strip() else line for line in site.splitlines(True))
        self.config_path.write_text(_MAIN.format(workdir=self.workdir, site=indented))
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            for path in [self.workdir, *self.workdir.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        with open(self.workdir / "stderr.log", "ab") as log:
            self._proc = subprocess.Popen(
                [nginx, "-p", str(self.workdir), "-c", str(self.config_path), "-e", str(self.workdir / "error.log"),
                 "-g", "daemon off;"],
                user=self._run_as, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx not listening within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        end(self._proc, signal.SIGQUIT, timeout)  # graceful
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def access_log(self) -> list[str]:
        try:
            return (self.workdir / "access.log").read_text().splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            try:
                with open(self.workdir / name, encoding="utf-8", errors="replace") as f:
                    text += "".join(deque(f, maxlen=lines))
            except FileNotFoundError:
                pass
        return text or "(no log)"
