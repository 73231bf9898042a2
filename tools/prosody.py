"""A throwaway Prosody for the integration tests and ``make run``.

:class:`ProsodyServer` writes a loopback-only, TLS-less config into a work dir, runs
``prosody -F`` in the foreground as a child process and stops it by PID. The config follows
``reference/servers/prosody.cfg.lua.in`` (facts measured on Prosody 0.12.3 from Debian).

Also here, shared by the test fixtures and the sandbox: :func:`plain_client`, :func:`login`
and :func:`logout` for slixmpp clients of this TLS-less server; :func:`http_status` for
readiness checks; :func:`write_toml` for the component's config file.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.stanza import Message

from tools.process import end

PRIVILEGE_NS = "urn:xmpp:privilege:2"
# openssl: the TLS test server's self-signed certificate (ProsodyServer(tls=True)).
APT_INSTALL = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y prosody prosody-modules openssl"

# prosody-modules provides mod_privilege (XEP-0356); Prosody only logs an error when a module
# is missing, so check for it here rather than discover it as a silent lack of privileges.
_MODULE_DIRS = ("/usr/lib/prosody/modules", "/usr/local/lib/prosody/modules")


def _have_prosody() -> bool:
    if not (shutil.which("prosody") and shutil.which("prosodyctl") and shutil.which("openssl")):
        return False
    return any(
        Path(d, name).exists() for d in _MODULE_DIRS for name in ("mod_privilege", "mod_privilege.lua")
    )


def ensure_prosody() -> str:
    """Return the path of the ``prosody`` binary, installing Prosody with apt (as root) if missing."""
    if not _have_prosody():
        if os.geteuid() != 0:
            raise RuntimeError(f"Prosody (with prosody-modules) is not installed; run as root: {APT_INSTALL}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "prosody", "prosody-modules", "openssl"]):
            subprocess.run(cmd, env=env, check=True, timeout=900)
        if not _have_prosody():
            raise RuntimeError(f"Prosody or mod_privilege still missing after: {APT_INSTALL}")
    return shutil.which("prosody")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loopback only: never route these checks through an http_proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 1) -> int | None:
    """The HTTP status of a GET (error statuses included), or None if nothing answers."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _distinct_free_ports(count: int) -> list[int]:
    # Each free_port() socket is closed before the next call, so the OS may hand out one twice.
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _lua_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _lua_list(values: list[str]) -> str:
    return "{ " + "".join(f"{_lua_str(v)}; " for v in values) + "}"


# Global modules, as in the reference config. "posix" writes the pidfile and enforces run_as_root.
MODULES = (
    "roster", "saslauth", "disco", "ping", "presence", "time", "uptime", "version",
    "pep", "vcard4", "vcard_legacy",  # vcard-temp (XEP-0054), backed by PEP
    "private", "carbons", "offline", "blocklist", "lastactivity",
    "adhoc", "admin_adhoc", "announce",  # XEP-0050 + XEP-0133
    "http", "bosh", "websocket",
    "admin_shell", "posix",
)

_CONFIG = """\
-- Written by tools.prosody: a throwaway server, loopback only.
run_as_root = true  -- as root, Prosody otherwise logs "Refusing to run as root" and hangs; prosodyctl needs it too
pidfile = {pidfile}
data_path = {data}
certificates = {certs}  -- empty unless tls: silences certificate warnings
{ssl}
admins = {admins}

interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
https_interfaces = {{ }}
s2s_ports = {{ }}
http_default_host = {domain}

-- without tls: allow PLAIN over plain c2s; BOSH stays plain HTTP either way
c2s_require_encryption = {require_encryption}
allow_unencrypted_plain_auth = {plain_auth}
authentication = {auth}

limits = {{ }}  -- no rate limits: load tests must not be throttled

modules_enabled = {modules}
modules_disabled = {disabled}

-- stdout goes to the log file (see ProsodyServer.start)
log = {{ {{ levels = {{ min = {log_level} }}, to = "console" }} }}

VirtualHost {domain}
	modules_enabled = {{ "privilege"; }}
	-- XEP-0356 (mod_privilege from prosody-modules, urn:xmpp:privilege:2)
	privileged_entities = {{
{privileged}	}}
{components}"""

_PRIVILEGED = """\
		[{component}] = {{
			roster = "both";
			message = "outgoing";
			presence = "roster";
			iq = {{
				["vcard-temp"] = "both";
				["jabber:iq:roster"] = "both";
				["http://jabber.org/protocol/commands"] = "both";
				["http://jabber.org/protocol/pubsub"] = "both";
				["urn:xmpp:ping"] = "get";
			}};
		}};
"""

_COMPONENT = """
Component {component}
	component_secret = {secret}
	validate_from_addresses = false  -- lets the component send with from=<user JID>
	modules_enabled = {{ "privilege" }}  -- needed on the component too: it announces the privileges on connect
"""


class ProsodyServer:
    """One Prosody process with its own config, data and log in ``workdir``.

    The ports are picked once, so ``stop()``/``kill()`` then ``start()`` brings the server back
    on the same ports with the same data (users, rosters, offline messages).
    Implements tools.servers.XmppServer; the class attributes are Prosody 0.12's quirks.
    """

    name = "prosody"
    bosh_path = "/http-bind"
    admin_command_count = 9
    admin_get_user_roster = True
    user_commands = ("uptime",)
    forbidden_command_text = "You don't have permission to execute this command"
    unknown_command_error = (503, "service-unavailable")
    unknown_iq_error_text = None
    registered_users_list = False  # XEP-0133 get-registered-users-list/-num
    add_user_note = True

    def __init__(
        self,
        workdir: Path,
        *,
        domain: str = "localhost",
        component_jid: str = "http.localhost",
        component_secret: str | None = None,
        admins: tuple[str, ...] = ("admin@localhost",),
        component_is_admin: bool = True,
        auth: str = "internal_hashed",
        log_level: str = "info",
        tls: bool = False,
        more_components: tuple[str, ...] = (),
    ) -> None:
        """``tls=True``: c2s requires STARTTLS with a self-signed certificate for ``domain``
        (``cert_path``; a client verifies it by using that file as its CA). ``more_components``:
        JIDs of further component blocks, configured like ``component_jid`` (same secret, privileges
        and admin role): the instances of one deployment (README "Scaling out")."""
        self.workdir = Path(workdir).resolve()
        self.domain = domain
        self.component_jid = component_jid
        self.component_secret = component_secret or secrets.token_urlsafe(16)
        self.components = (component_jid, *more_components)
        self.admins = tuple(admins) + (self.components if component_is_admin else ())
        self.auth = auth
        self.log_level = log_level
        self.tls = tls
        self.c2s_port, self.component_port, self.http_port = _distinct_free_ports(3)
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.cert_path = self.workdir / "certs" / f"{domain}.crt"
        self.log_path = self.workdir / "prosody.log"
        self.users: dict[str, str] = {}  # localpart -> password, of the accounts register() created
        self._proc: subprocess.Popen | None = None

    @property
    def bosh_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{self.bosh_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def write_config(self) -> None:
        """Write prosody.cfg.lua and the folders it names (done by start() and register())."""
        for sub in ("data", "certs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        key_path = self.cert_path.with_suffix(".key")
        if self.tls and not self.cert_path.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN={self.domain}", "-addext", f"subjectAltName=DNS:{self.domain}",
                 "-keyout", str(key_path), "-out", str(self.cert_path)],
                check=True, capture_output=True, timeout=60)
        ssl = (f"ssl = {{ certificate = {_lua_str(str(self.cert_path))}; key = {_lua_str(str(key_path))} }}"
               if self.tls else "")
        self.config_path.write_text(
            _CONFIG.format(
                pidfile=_lua_str(str(self.workdir / "prosody.pid")),
                data=_lua_str(str(self.workdir / "data")),
                certs=_lua_str(str(self.workdir / "certs")),
                ssl=ssl,
                require_encryption="true" if self.tls else "false",
                plain_auth="false" if self.tls else "true",
                disabled=_lua_list(["s2s", "dialback"] + ([] if self.tls else ["tls"])),
                admins=_lua_list(list(self.admins)),
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                http_port=self.http_port,
                domain=_lua_str(self.domain),
                auth=_lua_str(self.auth),
                modules=_lua_list(list(MODULES) + (["tls"] if self.tls else [])),
                log_level=_lua_str(self.log_level),
                privileged="".join(_PRIVILEGED.format(component=_lua_str(c)) for c in self.components),
                components="".join(_COMPONENT.format(component=_lua_str(c), secret=_lua_str(self.component_secret))
                                   for c in self.components),
            ),
            encoding="utf-8",
        )

    def start(self, timeout: float = 15) -> None:
        """Start Prosody and return once c2s, the component port and BOSH all answer."""
        if self.running:
            return
        prosody = ensure_prosody()
        self.write_config()
        with open(self.log_path, "ab") as log:  # append: a restart keeps the earlier run's log
            self._proc = subprocess.Popen(
                [prosody, "-F", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it: its owner stops it
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"Prosody exited with code {code} while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"Prosody not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        for port in (self.c2s_port, self.component_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
        return http_status(self.bosh_url) == 200

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM, then SIGKILL if Prosody has not exited within ``timeout`` seconds."""
        end(self._proc, signal.SIGTERM, timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL at once: the server dies without closing any stream (for fault tests)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def register(self, user_localpart: str, password: str) -> None:
        """Create the account (or reset its password); works whether Prosody runs or not."""
        self.write_config()
        prosodyctl = str(Path(ensure_prosody()).with_name("prosodyctl"))
        result = subprocess.run(
            [prosodyctl, "--config", str(self.config_path), "register", user_localpart, self.domain, password],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"prosodyctl register {user_localpart}@{self.domain} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        self.users[user_localpart] = password

    def component_config(self) -> dict[str, Any]:
        """The ``[xmpp]`` section of a tigase-rest config for this server."""
        return component_section(self)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> ProsodyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- slixmpp clients for this TLS-less server ------------------------------------------------


def plain_client(jid: str, password: str) -> ClientXMPP:
    """A ClientXMPP that logs in over plain TCP. Create it inside the running event loop."""
    client = ClientXMPP(jid, password)
    # The sandbox has no certificates: connect without TLS, which slixmpp refuses by default.
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    # And let SASL run over that unencrypted stream (Prosody offers SCRAM, and PLAIN because of
    # allow_unencrypted_plain_auth).
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    client.plugin["feature_mechanisms"].unencrypted_scram = True
    return client


def is_privilege_notice(msg: Message) -> bool:
    """True for the empty ``<privilege xmlns="urn:xmpp:privilege:2"/>`` message from the domain.

    Prosody 0.12's mod_privilege sends one to EVERY client session on its initial presence
    (a user's session has an empty privilege table, which Lua treats as true). It is noise
    for a client, so the test clients and the sandbox drop it.
    """
    return (
        not msg["from"].user
        and not msg["body"]
        and msg.xml.find(f"{{{PRIVILEGE_NS}}}privilege") is not None
    )


async def login(client: ClientXMPP, host: str, port: int, timeout: float = 10) -> None:
    """Connect and wait for session_start.

    Fails fast instead of letting slixmpp retry forever: on a refused connection, failed
    authentication, a disconnect before the session starts, or after ``timeout`` seconds.
    The client is left disconnected on failure.
    """
    outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def settle(reason: str | None) -> None:
        if not outcome.done():
            outcome.set_result(reason)

    handlers = {
        "session_start": lambda _: settle(None),
        "connection_failed": lambda err: settle(f"cannot connect to {host}:{port}: {err}"),
        "failed_all_auth": lambda _: settle(f"authentication failed for {client.boundjid.bare}"),
        "disconnected": lambda reason: settle(f"disconnected before the session started: {reason}"),
    }
    for name, handler in handlers.items():
        client.add_event_handler(name, handler)
    try:
        client.connect(host, port)
        try:
            failure = await asyncio.wait_for(outcome, timeout)
        except asyncio.TimeoutError:
            failure = f"no XMPP session for {client.boundjid.bare} within {timeout} s"
    finally:
        for name, handler in handlers.items():
            client.del_event_handler(name, handler)
    if failure:
        client.cancel_connection_attempt()
        client.abort()
        raise ConnectionError(failure)


async def logout(client: ClientXMPP, timeout: float = 5) -> None:
    """Close the stream politely, or drop the connection if that takes over ``timeout`` s."""
    try:
        await asyncio.wait_for(client.disconnect(wait=1), timeout)
    except asyncio.TimeoutError:
        client.abort()


# --- the component's config file ------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML basic strings must escape these; \uXXXX covers the rest of the control characters.
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def component_section(server) -> dict[str, Any]:
    """The ``[xmpp]`` section of a tigase-rest config for a throwaway loopback server (Prosody or ejabberd)."""
    return {
        "host": "127.0.0.1",
        "port": server.component_port,
        "component_jid": server.component_jid,
        "secret": server.component_secret,
        "domain": server.domain,
        "c2s_host": "127.0.0.1",
        "c2s_port": server.c2s_port,
        "c2s_tls": "none",  # loopback server without certificates: an explicit opt-out
        "bosh_url": server.bosh_url,
    }


def _toml_str(value: str) -> str:
    out = []
    for ch in value:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_str(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # only as a list item: an inline table
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")


def write_toml(path: str | os.PathLike, data: dict[str, dict[str, Any]]) -> None:
    """Write ``{section: {key: value}}`` as TOML tables.

    Values: str, int, float, bool, and lists of those or of inline tables (``api_keys``).
    """
    parts = []
    for section, values in data.items():
        lines = [f"[{_toml_key(section)}]"]
        for key, value in values.items():
            if isinstance(value, dict):
                raise TypeError(f"{section}.{key}: nested tables are not supported, only lists of inline tables")
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        parts.append("\n".join(lines) + "\n")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
