"""A throwaway ejabberd for the optional ejabberd tests (``make test-ejabberd``).

:class:`EjabberdServer` renders a loopback-only, TLS-less ``ejabberd.yml`` and an own
``ejabberdctl.cfg`` into a work dir and drives the Debian package's ``ejabberdctl`` with
``--ctl-config`` (facts measured on ejabberd 23.01 from Debian, ``reference/servers.md``):

- ``ejabberdctl`` sources its ctl config AFTER the command line, and the default one
  (``/etc/default/ejabberd``) names the system's config, pid file and spool: the own file sets
  ``ERLANG_NODE`` (unique per server), ``EJABBERD_CONFIG_PATH``, ``EJABBERD_PID_PATH``,
  ``SPOOL_DIR``, ``LOGS_DIR`` and ``ERL_DIST_PORT`` (so no epmd is started, and two servers never
  share one).
- As root, ``ejabberdctl`` runs everything as the user ``ejabberd`` (``su``), so the work dir is
  chowned to that user and must be reachable by it (``/tmp/pytest-of-root`` is not: mode 0700).
  As any other user than root or ``ejabberd``, ``ejabberdctl`` refuses to run (exit 7).
- ``ejabberdctl start`` detaches; the server is ready in 2-3 s, when ``ejabberdctl status``
  returns 0 (1 while it is still starting, 3 when the node is down) and the ports accept.
- Users: ``ejabberdctl register`` needs the running node (unlike ``prosodyctl``).

The mnesia spool is tied to the Erlang node name, so the name, like the ports, is fixed for the
life of the object: a restart finds its users again.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from .prosody import _distinct_free_ports, component_section

APT_INSTALL = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd"
EJABBERD_USER = "ejabberd"  # INSTALLUSER in Debian's ejabberdctl
_CTL_CANDIDATES = ("/usr/sbin/ejabberdctl", "/usr/bin/ejabberdctl")  # /usr/sbin is not on a user's PATH
_CTL_TIMEOUT = 60  # one ejabberdctl call (each starts an Erlang VM: 0.3-0.5 s)


def _ejabberdctl() -> str | None:
    found = shutil.which("ejabberdctl")
    if found:
        return found
    return next((path for path in _CTL_CANDIDATES if os.access(path, os.X_OK)), None)


def ensure_ejabberd() -> str:
    """Return the path of ``ejabberdctl``, installing ejabberd with apt (as root) if missing."""
    ctl = _ejabberdctl()
    if ctl is None:
        if os.geteuid() != 0:
            raise RuntimeError(f"ejabberd is not installed; run as root: {APT_INSTALL}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "ejabberd"]):
            subprocess.run(cmd, env=env, check=True, timeout=900)
        ctl = _ejabberdctl()
        if ctl is None:
            raise RuntimeError(f"ejabberdctl still missing after: {APT_INSTALL}")
    return ctl


def _yaml_str(value: str) -> str:
    # A YAML double-quoted scalar; JSON escaping is a subset of it.
    return '"' + "".join(
        {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}.get(ch, ch) if ord(ch) >= 0x20 or ch in "\n\t"
        else f"\\x{ord(ch):02x}"
        for ch in value
    ) + '"'


def _yaml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_yaml_str(v) for v in values) + "]"


# From reference/servers/ejabberd.yml.tmpl (known good on 23.01). @NAME@ placeholders.
_CONFIG = """\
# Written by tools.ejabberd: a throwaway server, loopback only, no TLS.
loglevel: @LOGLEVEL@
log_rotate_count: 0

hosts:
  - @DOMAIN@

# plain password storage: SASL PLAIN and SCRAM both work over the TLS-less c2s
auth_method: internal
auth_password_format: plain

listen:
  -
    port: @C2S_PORT@
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls: false
  -
    # XEP-0114 external component
    port: @COMPONENT_PORT@
    ip: "127.0.0.1"
    module: ejabberd_service
    check_from: false          # the component may send stanzas with any 'from'
    hosts:
@COMPONENT_HOSTS@  -
    port: @HTTP_PORT@
    ip: "127.0.0.1"
    module: ejabberd_http
    tls: false
    request_handlers:
      /bosh: mod_bosh
      /ws: ejabberd_http_ws
@API_HANDLER@
acl:
  admin:
    user: @ADMINS@
    # the component runs XEP-0133 commands as an admin
    server: @ADMIN_SERVERS@
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
      - ::1/128

access_rules:
  local:
    allow: local
  c2s:
    deny: blocked
    allow: all
  announce:
    allow: admin
  configure:
    allow: admin

api_permissions:
  # ejabberdctl (register, status, ...) may run every command
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
@API_PERMISSIONS@
shaper:
  normal:
    rate: 3000
    burst_size: 20000
  fast: 200000

shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages:
    5000: admin
    100: all
  c2s_shaper:
    none: admin
    normal: all

modules:
  mod_adhoc: {}
  mod_admin_extra: {}
  mod_announce:
    access: announce
  mod_blocking: {}
  mod_bosh: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_configure: {}
  mod_disco: {}
@API_MODULE@  mod_last: {}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_privacy: {}
  mod_private: {}
  mod_roster:
    versioning: true
  mod_stream_mgmt:
    resend_on_timeout: if_offline
  mod_vcard:
    search: false
  mod_vcard_xupdate: {}
  mod_version: {}
  # XEP-0356 (urn:xmpp:privilege:1; 23.01: roster / message / presence, no IQ permission)
  mod_privilege:
    roster:
      both: all
    message:
      outgoing: all
    presence:
      managed_entity: all
      roster: all
"""

# http_api=True (the bench's step E): ejabberd's own REST API, mod_http_api on the HTTP listener at
# /api, for HTTP Basic auth (user@host:password) of an account in acl admin; everyone else is refused.
_API_HANDLER = "      /api: mod_http_api\n"
_API_PERMISSIONS = """\
  # mod_http_api: HTTP Basic auth of an account in acl admin may run every command
  "admin access":
    who:
      access:
        allow:
          - acl: admin
    what:
      - "*"
      - "!stop"
      - "!start"
"""
_API_MODULE = "  mod_http_api: {}\n"


class EjabberdServer:
    """A throwaway ejabberd in ``workdir``: ``start()``, ``register()``, ``stop()``.

    The ports (c2s, component, HTTP, Erlang distribution) and the Erlang node name are chosen once,
    here, and kept across restarts. Implements tools.servers.XmppServer; the class attributes are
    ejabberd 23.01's quirks.
    """

    name = "ejabberd"
    bosh_path = "/bosh"
    admin_command_count = 21
    admin_get_user_roster = False
    user_commands = ("ping",)
    forbidden_command_text = "Access denied by service policy"
    unknown_command_error = (404, "item-not-found")
    unknown_iq_error_text = "No module is handling this query"
    registered_users_list = True  # XEP-0133 get-registered-users-list/-num
    add_user_note = False

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        domain: str = "localhost",
        component_jid: str = "http.localhost",
        component_secret: str | None = None,
        admins: tuple[str, ...] = ("admin@localhost",),
        component_is_admin: bool = True,
        log_level: str = "info",
        http_api: bool = False,
        more_components: tuple[str, ...] = (),
        erl_options: str = "",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.domain = domain
        self.component_jid = component_jid
        self.component_secret = component_secret or secrets.token_urlsafe(16)
        self.admins = tuple(admins)
        self.component_is_admin = component_is_admin
        self.log_level = log_level
        self.http_api = http_api  # mod_http_api at /api (admins only), see api_url
        # Further component JIDs with the same secret (bench step E: two instances on one port).
        self.components = (component_jid, *more_components)
        self.erl_options = erl_options  # extra emulator flags, e.g. "+sbwt none" (bench step E)
        self.c2s_port, self.component_port, self.http_port, self.dist_port = _distinct_free_ports(4)
        # Short name (no dot after @): ejabberdctl then uses -sname. Unique, so that no two servers
        # (or a system ejabberd, ejabberd@localhost) ever answer for each other.
        self.node = f"tigase-rest-{secrets.token_hex(4)}@localhost"
        self.config_path = self.workdir / "ejabberd.yml"
        self.ctl_config_path = self.workdir / "ejabberdctl.cfg"
        self.pid_path = self.workdir / "ejabberd.pid"
        self.spool_dir = self.workdir / "spool"
        self.logs_dir = self.workdir / "logs"
        self.log_path = self.logs_dir / "ejabberd.log"
        self.users: dict[str, str] = {}  # localpart -> password, of the accounts register() created
        self._pid: int | None = None
        self._killed = False  # a SIGKILL may lose the last seconds of mnesia writes

    @property
    def bosh_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{self.bosh_path}"

    @property
    def api_url(self) -> str:
        """mod_http_api's base URL (``http_api=True`` only): POST {api_url}/send_message etc."""
        return f"http://127.0.0.1:{self.http_port}/api"

    @property
    def pid(self) -> int | None:
        """The Erlang VM's (beam.smp) pid while it runs."""
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    # --- config -----------------------------------------------------------------------------

    def write_config(self) -> None:
        """Write ejabberd.yml, ejabberdctl.cfg and the folders they name; as root, hand them all to
        the ``ejabberd`` user, who runs the server."""
        for folder in (self.workdir, self.spool_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        servers = self.components if self.component_is_admin else ()
        values = {
            "@LOGLEVEL@": self.log_level,
            "@DOMAIN@": _yaml_str(self.domain),
            "@C2S_PORT@": str(self.c2s_port),
            "@COMPONENT_PORT@": str(self.component_port),
            "@HTTP_PORT@": str(self.http_port),
            "@COMPONENT_HOSTS@": "".join(f"      {_yaml_str(jid)}:\n        password: {_yaml_str(self.component_secret)}\n"
                                         for jid in self.components),
            "@ADMINS@": _yaml_list(self.admins),
            "@ADMIN_SERVERS@": _yaml_list(servers),
            "@API_HANDLER@": _API_HANDLER if self.http_api else "",
            "@API_PERMISSIONS@": _API_PERMISSIONS if self.http_api else "",
            "@API_MODULE@": _API_MODULE if self.http_api else "",
        }
        text = _CONFIG
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        self.config_path.write_text(text, encoding="utf-8")
        ctl = {
            "ERLANG_NODE": self.node,
            "EJABBERD_CONFIG_PATH": str(self.config_path),
            "EJABBERD_PID_PATH": str(self.pid_path),
            "SPOOL_DIR": str(self.spool_dir),
            "LOGS_DIR": str(self.logs_dir),
            "ERL_DIST_PORT": str(self.dist_port),  # no epmd; the ctl clients use -dist_listen false
            # The distribution port listens on loopback only (INET_DIST_INTERFACE would cost one
            # more Erlang VM per ejabberdctl call to parse the address).
            "ERL_OPTIONS": " ".join(filter(None, (
                "-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}", self.erl_options))),
            "EJABBERD_BYPASS_WARNINGS": "true",
        }
        self.ctl_config_path.write_text(
            "# Written by tools.ejabberd; sourced by ejabberdctl --ctl-config\n"
            + "".join(f"{key}={shlex.quote(value)}\n" for key, value in ctl.items()),
            encoding="utf-8",
        )
        if os.geteuid() == 0:
            self._hand_over_to_ejabberd_user()

    def _hand_over_to_ejabberd_user(self) -> None:
        try:
            account = pwd.getpwnam(EJABBERD_USER)
        except KeyError:
            raise RuntimeError(f"no user {EJABBERD_USER!r}: is the ejabberd package installed? {APT_INSTALL}") from None
        for root, dirs, files in os.walk(self.workdir):
            for name in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
                os.chown(name, account.pw_uid, account.pw_gid, follow_symlinks=False)
        # Every parent must be searchable by that user too; ask the system rather than guess.
        check = subprocess.run(
            ["su", "-s", "/bin/sh", "-c", 'test -w "$0" && test -x "$0"', EJABBERD_USER, "--", str(self.workdir)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
        )
        if check.returncode != 0:
            raise RuntimeError(
                f"the user {EJABBERD_USER!r} (ejabberdctl runs the server as it) cannot write {self.workdir}: "
                f"use a work dir whose parents it can search, e.g. tempfile.mkdtemp() under /tmp"
            )

    # --- lifecycle --------------------------------------------------------------------------

    def _ctl(self, *args: str, timeout: float = _CTL_TIMEOUT) -> subprocess.CompletedProcess:
        ctl = ensure_ejabberd()
        if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != EJABBERD_USER:
            raise RuntimeError(f"ejabberdctl runs only as root or as the user {EJABBERD_USER!r}")
        return subprocess.run(
            [ctl, "--ctl-config", str(self.ctl_config_path), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
        )

    def ctl(self, *args: str, timeout: float = _CTL_TIMEOUT) -> str:
        """Run ``ejabberdctl ARGS`` against this server; its output, or RuntimeError on failure."""
        result = self._ctl(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"ejabberdctl {' '.join(args[:1])} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def start(self, timeout: float = 30) -> None:
        """Start ejabberd and return once ``ejabberdctl status`` says it runs and c2s, the component
        port and BOSH accept connections."""
        if self.running:
            return
        self.write_config()
        self.pid_path.unlink(missing_ok=True)  # a stale one (after kill()) must not name the new server
        deadline = time.monotonic() + timeout
        result = self._ctl("start", timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"ejabberdctl start failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{self.log_tail()}"
            )
        while True:
            if self._pid is None:
                self._pid = self._read_pid()
            if self._pid is not None and not _alive(self._pid):
                self._pid = None
                raise RuntimeError(f"ejabberd exited while starting:\n{self.log_tail()}")
            if self._ports_accept():
                status = self._ctl("status", timeout=max(1.0, deadline - time.monotonic()))
                if status.returncode == 0:
                    if self._pid is None:
                        self._pid = self._read_pid()
                    if self._killed:
                        self._restore_users()
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"ejabberd not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _restore_users(self) -> None:
        # mnesia buffers its transaction log: accounts registered a moment before a kill() can be
        # gone after the restart. Put back those register() created.
        self._killed = False
        known = set(self.ctl("registered_users", self.domain).split())
        for user, password in self.users.items():
            if user not in known:
                self.register(user, password)

    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # Signal only our own server: the process must carry our unique node name.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if self.node.encode() in cmdline else None

    def _ports_accept(self) -> bool:
        for port in (self.c2s_port, self.component_port, self.http_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (the Erlang VM then stops cleanly), then SIGKILL after ``timeout`` seconds."""
        pid = self._pid or self._read_pid()
        if pid is None:
            return
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        self._pid = None

    def kill(self) -> None:
        """SIGKILL at once: the server dies without closing any stream (for fault tests)."""
        pid = self._pid or self._read_pid()
        if pid is None:
            return
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
            self._killed = True
        self._pid = None

    # --- accounts ---------------------------------------------------------------------------

    def register(self, user_localpart: str, password: str) -> None:
        """Create the account, or reset its password if it exists. The server must be running."""
        result = self._ctl("register", user_localpart, self.domain, password)
        if result.returncode != 0 and "already registered" in result.stdout + result.stderr:
            result = self._ctl("change_password", user_localpart, self.domain, password)
        if result.returncode != 0:
            raise RuntimeError(
                f"ejabberdctl register {user_localpart}@{self.domain} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        self.users[user_localpart] = password

    # --- for the component and the tests ----------------------------------------------------

    def component_config(self) -> dict[str, Any]:
        """The ``[xmpp]`` section of a tigase-rest config for this server."""
        return component_section(self)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log_path, self.logs_dir / "error.log", self.logs_dir / "crash.log"):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    tail = "".join(deque(f, maxlen=lines))
            except FileNotFoundError:
                continue
            if tail.strip():
                parts.append(f"--- {path.name}\n{tail}")
        return "".join(parts) or "(no log)"

    def __enter__(self) -> EjabberdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (it is not our child: init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
