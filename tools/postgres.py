"""A throwaway PostgreSQL for the scale-out test and bench: ``initdb`` into a temp dir, ``postgres``
in the foreground on a free loopback port, as an unprivileged user, stopped by PID.

Debian's binaries live in /usr/lib/postgresql/<version>/bin (not on PATH); installed with apt
when missing (as root). PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user the package creates (the work dir is made theirs).
"""

from __future__ import annotations

import os
import pwd
import secrets
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

APT_INSTALL = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql"
RUN_AS = "postgres"  # as root: the unprivileged user Debian's package creates


def _bin_dir() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def ensure_postgres() -> Path:
    """The folder of initdb/postgres, installing PostgreSQL with apt (as root) when missing."""
    found = _bin_dir()
    if found is None:
        if os.geteuid() != 0:
            raise RuntimeError(f"PostgreSQL is not installed; run as root: {APT_INSTALL}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
            subprocess.run(cmd, env=env, check=True, timeout=900)
        found = _bin_dir()
        if found is None:
            raise RuntimeError(f"PostgreSQL binaries still missing after: {APT_INSTALL}")
    return found


class PostgresServer:
    """One PostgreSQL cluster with database ``tigase_rest`` and password login for user ``tigase``."""

    def __init__(self, user: str = "tigase", database: str = "tigase_rest") -> None:
        self.user = user
        self.database = database
        self.password = secrets.token_urlsafe(12)
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="tigase-rest-pg-"))  # not under a root-only pytest tmp
        self.log_path = self.workdir / "postgres.log"
        self._proc: subprocess.Popen | None = None
        self._run_as = RUN_AS if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, user=self._run_as, cwd=self.workdir, capture_output=True, text=True,
                              timeout=120, **kwargs)

    def start(self, timeout: float = 30) -> None:
        bin_dir = ensure_postgres()
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        data = self.workdir / "data"
        pwfile = self.workdir / "pw"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            os.chown(pwfile, pwd.getpwnam(self._run_as).pw_uid, -1)
        result = self._run([str(bin_dir / "initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}",
                            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.workdir),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"],
                user=self._run_as, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}:\n{self.log_tail()}")
            ready = self._run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)])
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)
        # Over the Unix socket in the work dir (trust): no password on any command line.
        created = self._run([str(bin_dir / "createdb"), "-h", str(self.workdir), "-p", str(self.port),
                             "-U", self.user, self.database])
        if created.returncode != 0:
            raise RuntimeError(f"createdb failed:\n{created.stdout}{created.stderr}")

    def stop(self, timeout: float = 10) -> None:
        end(self._proc, signal.SIGINT, timeout)  # "fast" shutdown
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except FileNotFoundError:
            return "(no log)"

    def reachable(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False
