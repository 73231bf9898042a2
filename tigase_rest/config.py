"""Configuration: one TOML file, every key overridable by env ``TIGASE_REST_<SECTION>_<KEY>``.

The schema below is the single source of truth: loading, env overrides, ``--check-config`` and
``etc/config.example.toml`` all follow it. A bad value raises :class:`ConfigError` naming the key.

Paths: a relative path in any path key (``PATH_KEYS``) resolves against the folder of the config
file (the current folder when there is no file); :func:`from_dict` stores them absolute, so no
consumer needs to know where the config came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "TIGASE_REST_"
# TIGASE_REST_* variables that are not config keys (an unknown one is an error, like an unknown key).
BOOTSTRAP_ENV = f"{ENV_PREFIX}BOOTSTRAP_API_KEY"  # Tigase's HTTP_API_KEY_BOOTSTRAP
OTHER_ENV: frozenset[str] = frozenset({BOOTSTRAP_ENV})
# Keys holding a path (or a list of paths): relative ones resolve against the config file's folder.
PATH_KEYS = {("xmpp", "secret_file"), ("xmpp", "c2s_ca_file"), ("http", "scripts_dir"),
             ("http", "tls_cert"), ("http", "tls_key"), ("storage", "data_dir")}
C2S_TLS_MODES = ("starttls", "direct", "none")


class ConfigError(Exception):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class ApiKey:
    key: str
    # Empty tuples mean "no restriction": any Host, any path (Tigase's ApiKeyItem semantics), any method.
    domains: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()  # upper case, e.g. ("GET",): a read-only key cannot PUT (not in Tigase)
    # What logs and metrics call the key (never the key itself); empty: a fingerprint of it.
    name: str = ""


@dataclass(frozen=True)
class XmppConfig:
    host: str = "127.0.0.1"
    port: int = 5347
    component_jid: str = "http.localhost"
    secret: str = ""
    secret_file: str = ""
    domain: str = "localhost"
    c2s_host: str = ""  # empty: same as host
    c2s_port: int = 5222
    c2s_tls: str = "starttls"
    c2s_ca_file: str = ""
    bosh_url: str = ""
    iq_timeout: float = 30.0
    reconnect_max_delay: float = 30.0
    # No stanza the component writes may be larger: the server would close the whole stream.
    max_stanza_bytes: int = 256 * 1024
    # The component JIDs of the instances that form one deployment behind a load balancer (this
    # one's component_jid among them); empty: a single instance. More than one needs storage.url.
    deployment: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    context_path: str = "/rest"
    # Folders of the operator's own handler scripts, loaded after the built-in ones (which ship in
    # the package): a script <folder>/<name>.py replaces the built-in (or an earlier folder's) script
    # of the same folder and name; other names add to the folder. A string or a list.
    scripts_dir: tuple[str, ...] = ()
    # false: serve only the scripts of scripts_dir (the built-in handlers are not loaded).
    builtin_scripts: bool = True
    max_body_bytes: int = 1024 * 1024
    # Seconds a client may take to send its body; then 408 (a slow or stalled upload holds nothing).
    body_timeout: float = 10.0
    # Seconds a request head may take (from the connection, or from its first byte on a kept-alive
    # connection); then the connection is closed. aiohttp has no such limit.
    header_timeout: float = 15.0
    # Seconds an idle keep-alive connection stays open (nginx's default; aiohttp's is 3630).
    keepalive_timeout: float = 75.0
    # Open connections at most; past it a new connection gets 503 and is closed at once.
    max_connections: int = 10000
    # SO_REUSEPORT: several instances on one machine listen on the same host and port, and the kernel
    # spreads new connections over them (README "Scaling out": one core each, no proxy hop).
    reuse_port: bool = False
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For / Forwarded headers name the client.
    trusted_proxies: tuple[str, ...] = ()
    # Native HTTPS (both or neither): PEM certificate chain and its private key.
    tls_cert: str = ""
    tls_key: str = ""
    # Tigase's exact answer shapes for migrating clients (README "Tigase compatibility mode"): ad-hoc
    # results without our additions, repeated <value> elements, sess-man@ / vhost-man@ {domain}
    # routed to the server's own XEP-0133 commands. Off: our documented shapes.
    tigase_compat: bool = False

    @property
    def prefix(self) -> str:
        """What every API path starts with: the context path, "" for a context path of "/"."""
        return "" if self.context_path == "/" else self.context_path


@dataclass(frozen=True)
class AuthConfig:
    api_keys: tuple[ApiKey, ...] = ()
    admins: tuple[str, ...] = ()
    open_access: bool = False
    # A caller is also an admin when the server offers its session the XEP-0133 commands.
    admins_from_server: bool = True
    credential_ttl: float = 300.0
    max_failures: int = 5
    failure_window: float = 60.0
    max_sessions: int = 1000
    session_idle_timeout: float = 300.0
    # BOSH pre-binds per account and minute: each is a full login with the caller's password.
    max_prebinds_per_minute: int = 10


POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class StorageConfig:
    # Where the component keeps state that must survive a restart (external user statuses).
    # Empty: systemd's $STATE_DIRECTORY (StateDirectory=) when set, else "data" next to the config file.
    data_dir: str = ""
    # Where the state shared by the instances of a deployment lives (external user statuses):
    # "sqlite" (files in data_dir, one instance) or "postgresql://user:password@host:port/database"
    # (needs the extra: pip install 'tigase-rest[postgresql]'). The webhook queue stays in data_dir.
    url: str = "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith(POSTGRESQL_SCHEMES)


@dataclass(frozen=True)
class PresenceConfig:
    # External user statuses (/rest/user/{jid}/status): each is kept, and re-sent on every reconnect.
    max_statuses_per_user: int = 10
    max_statuses: int = 10_000


@dataclass(frozen=True)
class WebhooksConfig:
    # Stanzas to the component's domain are POSTed here; empty: the feature is off.
    url: str = ""
    content_type: str = "application/json"
    stanzas: tuple[str, ...] = ("message", "presence", "iq")
    events: tuple[str, ...] = ("bare", "full", "host")
    timeout: float = 10.0
    secret: str = ""
    max_queue: int = 1000
    # Seconds a message is retried while the URL is unreachable; then it bounces to its sender.
    retry_for: float = 3600.0


WEBHOOK_CONTENT_TYPES = ("application/json", "application/xmpp+xml")
WEBHOOK_URL_FIELDS = ("kind", "type", "to", "from")


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    # "text" (one line per record) or "json" (one JSON object per line, for log shippers).
    format: str = "text"
    # One line per HTTP request at info level (the access log). Off behind a proxy that logs the
    # requests itself: each line costs the component CPU (BENCHMARKS.md); /metrics counts either way.
    access: bool = True


LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class MetricsConfig:
    # Client addresses (CIDRs) that may read GET /metrics; anyone else gets 403.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class Config:
    xmpp: XmppConfig = field(default_factory=XmppConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    base_dir: Path = Path(".")  # the config file's folder: relative paths were resolved against it
    # env TIGASE_REST_BOOTSTRAP_API_KEY: an API key valid only while no other key exists (neither
    # in [auth] api_keys nor added with the api-key-add command), for unattended provisioning.
    bootstrap_api_key: str = field(default="", repr=False)

    @property
    def c2s_host(self) -> str:
        return self.xmpp.c2s_host or self.xmpp.host

    @property
    def data_path(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def scripts_paths(self) -> tuple[Path, ...]:
        """The operator's script folders, in load order (after the built-in ones)."""
        return tuple(Path(d) for d in self.http.scripts_dir)


SECTIONS = {"xmpp": XmppConfig, "http": HttpConfig, "auth": AuthConfig, "storage": StorageConfig,
            "presence": PresenceConfig, "webhooks": WebhooksConfig, "log": LogConfig,
            "metrics": MetricsConfig}


def load(path: str | os.PathLike | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (if any), apply env overrides, validate. Raises ConfigError."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {p} is a folder, not a file") from None
        except PermissionError:
            raise ConfigError(f"config file {p} is not readable by this user (uid {os.geteuid()}): "
                              "check its mode and owner") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {p} is not UTF-8 (byte {e.start}): save it as UTF-8") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML: {e}") from None
        base_dir = p.resolve().parent
    return from_dict(raw, env, base_dir)


def from_dict(raw: Mapping[str, Any], env: Mapping[str, str] | None = None, base_dir: Path | None = None) -> Config:
    env = {} if env is None else env
    base_dir = base_dir or Path.cwd()
    for name in raw:
        if name not in SECTIONS:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(SECTIONS)})")
    known_env = {f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
                 for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)} | OTHER_ENV
    for env_name in sorted(env):
        if env_name.startswith(ENV_PREFIX) and env_name not in known_env:
            raise ConfigError(f"unknown environment variable {env_name}: no such config key "
                              f"(they are {ENV_PREFIX}<SECTION>_<KEY>, e.g. {ENV_PREFIX}XMPP_SECRET_FILE)")
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}] must be a table, not {table!r}")
        values = dict(table)
        for f in dataclasses.fields(cls):
            env_name = f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
            if env_name in env:
                values[f.name] = _from_env(f, env[env_name], env_name)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown key {name}.{key}")
        coerced = {k: _coerce(name, cls, k, v) for k, v in values.items()}
        for key in [k for k in coerced if (name, k) in PATH_KEYS]:
            coerced[key] = _absolute(coerced[key], base_dir)
        sections[name] = cls(**coerced)
    if not sections["storage"].data_dir:
        # systemd's StateDirectory= (several are colon separated: the first is ours).
        state = env.get("STATE_DIRECTORY", "").split(":")[0]
        sections["storage"] = dataclasses.replace(sections["storage"], data_dir=state or str(base_dir / "data"))
    cfg = Config(**sections, base_dir=base_dir, bootstrap_api_key=env.get(BOOTSTRAP_ENV, "").strip())
    cfg = _resolve_secret(cfg)
    validate(cfg)
    return cfg


def _absolute(value: Any, base_dir: Path) -> Any:
    """A path key's value with relative paths made absolute (from the config file's folder)."""
    if isinstance(value, tuple):
        return tuple(_absolute(v, base_dir) for v in value)
    if not value:
        return value
    return str(base_dir / Path(value).expanduser())


def _from_env(f: dataclasses.Field, text: str, env_name: str) -> Any:
    """Env values are strings; lists are comma separated."""
    if f.name in ("api_keys", "admins") or isinstance(f.default, tuple):  # lists: comma separated
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


_BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _coerce(section: str, cls: type, key: str, value: Any) -> Any:
    name = f"{section}.{key}"
    default = next(f for f in dataclasses.fields(cls) if f.name == key)
    kind = type(default.default) if default.default is not dataclasses.MISSING else tuple
    if key == "api_keys":
        return _api_keys(value)
    if kind is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(value)
    if kind is bool:
        if isinstance(value, str) and value.lower() in _BOOL:
            return _BOOL[value.lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value
    if kind in (int, float):
        try:
            number = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        # int(5.5) would silently drop the fraction: 5.5 is no value for a port or a count.
        if number is None or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, not {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {value!r}")
    return value


def _api_keys(value: Any) -> tuple[ApiKey, ...]:
    if not isinstance(value, list):
        raise ConfigError("auth.api_keys must be a list of keys or tables {key, domains, paths, methods}")
    keys = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            keys.append(ApiKey(item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise ConfigError(f"auth.api_keys[{i}] must be a string or a table with a non-empty 'key'")
        extra = set(item) - {"key", "domains", "paths", "methods", "name"}
        if extra:
            raise ConfigError(f"auth.api_keys[{i}]: unknown key {sorted(extra)[0]!r}")
        domains = _strings(item.get("domains", ()), f"auth.api_keys[{i}].domains")
        paths = _strings(item.get("paths", ()), f"auth.api_keys[{i}].paths")
        for p in paths:
            try:
                re.compile(p)
            except re.error as e:
                raise ConfigError(f"auth.api_keys[{i}].paths: invalid regex {p!r}: {e}") from None
        methods = tuple(m.upper() for m in _strings(item.get("methods", ()), f"auth.api_keys[{i}].methods"))
        for m in methods:
            if not re.fullmatch(r"[A-Z]+", m):
                raise ConfigError(f"auth.api_keys[{i}].methods: {m!r} is not an HTTP method like GET or PUT")
        name = item.get("name", "")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]{0,64}", name):
            raise ConfigError(f"auth.api_keys[{i}].name must be up to 64 letters, digits, '.', '_' or '-'")
        keys.append(ApiKey(item["key"], domains, paths, methods, name))
    return tuple(keys)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    """A list of strings; a single string is a list of one (tuple("a.com") would be its letters)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, not {value!r}")
    return tuple(value)


def _resolve_secret(cfg: Config) -> Config:
    x = cfg.xmpp
    if x.secret and x.secret_file:
        raise ConfigError("xmpp.secret and xmpp.secret_file are both set (in the file or as "
                          "TIGASE_REST_XMPP_SECRET / TIGASE_REST_XMPP_SECRET_FILE): keep one")
    if not x.secret_file:
        return cfg
    path = Path(x.secret_file)
    try:
        secret = path.read_bytes().decode("utf-8").strip()
    except OSError as e:
        raise ConfigError(f"xmpp.secret_file: cannot read {path}: {e.strerror or e} "
                          f"(as uid {os.geteuid()})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"xmpp.secret_file: {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"xmpp.secret_file: {path} is empty")
    return dataclasses.replace(cfg, xmpp=dataclasses.replace(x, secret=secret))


def validate(cfg: Config) -> None:
    x, h, a = cfg.xmpp, cfg.http, cfg.auth
    if not x.secret:
        raise ConfigError("xmpp.secret is required (or xmpp.secret_file, or env TIGASE_REST_XMPP_SECRET)")
    if not x.component_jid or "@" in x.component_jid or "/" in x.component_jid:
        raise ConfigError(f"xmpp.component_jid must be a bare domain like http.example.com, not {x.component_jid!r}")
    if not x.domain:
        raise ConfigError("xmpp.domain is required")
    for name, port in (("xmpp.port", x.port), ("xmpp.c2s_port", x.c2s_port), ("http.port", h.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{name} must be a TCP port (0-65535), not {port}")
    if x.c2s_tls not in C2S_TLS_MODES:
        raise ConfigError(f"xmpp.c2s_tls must be one of {', '.join(C2S_TLS_MODES)}, not {x.c2s_tls!r}")
    if x.bosh_url and not re.match(r"https?://", x.bosh_url):
        raise ConfigError(f"xmpp.bosh_url must be an http(s) URL, not {x.bosh_url!r}")
    if x.iq_timeout <= 0:
        raise ConfigError("xmpp.iq_timeout must be > 0 seconds")
    if x.max_stanza_bytes < 4096:
        raise ConfigError(f"xmpp.max_stanza_bytes must be at least 4096, not {x.max_stanza_bytes}")
    if cfg.presence.max_statuses_per_user < 1 or cfg.presence.max_statuses < 1:
        raise ConfigError("presence.max_statuses_per_user and presence.max_statuses must be >= 1")
    if not h.context_path.startswith("/") or (h.context_path != "/" and h.context_path.endswith("/")):
        raise ConfigError(f"http.context_path must start with / and not end with /, not {h.context_path!r}")
    if h.max_body_bytes <= 0:
        raise ConfigError("http.max_body_bytes must be > 0")
    for name in ("body_timeout", "header_timeout", "keepalive_timeout"):
        if getattr(h, name) <= 0:
            raise ConfigError(f"http.{name} must be > 0 seconds")
    if h.max_connections < 1:
        raise ConfigError("http.max_connections must be >= 1")
    for proxy in h.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies: {proxy!r} is not an IP address or CIDR "
                              "(e.g. 127.0.0.1, 10.0.0.0/8, ::1)") from None
    if bool(h.tls_cert) != bool(h.tls_key):
        raise ConfigError("http.tls_cert and http.tls_key go together: set both (native HTTPS) or neither")
    for folder in cfg.scripts_paths:
        if not folder.is_dir():
            raise ConfigError(f"http.scripts_dir: no such folder {folder}")
    if a.max_failures < 1 or a.failure_window <= 0 or a.credential_ttl < 0:
        raise ConfigError("auth.max_failures must be >= 1, auth.failure_window > 0, auth.credential_ttl >= 0")
    if a.max_sessions < 1:
        raise ConfigError("auth.max_sessions must be >= 1")
    for jid in a.admins:
        if "@" not in jid or "/" in jid:
            raise ConfigError(f"auth.admins: {jid!r} is not a bare JID")
    if cfg.bootstrap_api_key == "open_access" or any(not c.isprintable() or c.isspace() for c in cfg.bootstrap_api_key):
        raise ConfigError(f"{BOOTSTRAP_ENV} must be a key that can be sent in an Api-Key header "
                          "(no spaces, not 'open_access')")
    _validate_webhooks(cfg.webhooks)
    if cfg.log.format not in LOG_FORMATS:
        raise ConfigError(f"log.format must be text or json, not {cfg.log.format!r}")
    for cidr in cfg.metrics.allow:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"metrics.allow: {cidr!r} is not an address or CIDR like 10.0.0.0/8") from None
    _validate_scale_out(cfg)
    if cfg.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level must be debug, info, warning or error, not {cfg.log.level!r}")


def _validate_webhooks(w: WebhooksConfig) -> None:
    if w.url:
        if not re.match(r"https?://", w.url):
            raise ConfigError(f"webhooks.url must be an http(s) URL, not {w.url!r}")
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(w.url) if name is not None]
        except ValueError as e:
            raise ConfigError(f"webhooks.url: {e} (write a literal brace as {{{{ or }}}})") from None
        for name in fields:
            if name not in WEBHOOK_URL_FIELDS:
                raise ConfigError(f"webhooks.url: unknown field {{{name}}} (known: "
                                  f"{', '.join('{' + f + '}' for f in WEBHOOK_URL_FIELDS)})")
    if w.content_type not in WEBHOOK_CONTENT_TYPES:
        raise ConfigError(f"webhooks.content_type must be one of {', '.join(WEBHOOK_CONTENT_TYPES)}, "
                          f"not {w.content_type!r}")
    for key, values, known in (("stanzas", w.stanzas, ("message", "presence", "iq")),
                               ("events", w.events, ("bare", "full", "host"))):
        for value in values:
            if value not in known:
                raise ConfigError(f"webhooks.{key}: {value!r} is not one of {', '.join(known)}")
    if w.timeout <= 0 or w.retry_for <= 0:
        raise ConfigError("webhooks.timeout and webhooks.retry_for must be > 0 seconds")
    if w.max_queue < 1:
        raise ConfigError("webhooks.max_queue must be >= 1")


def _validate_scale_out(cfg: Config) -> None:
    x, s = cfg.xmpp, cfg.storage
    if s.url != "sqlite" and not s.is_postgresql:
        raise ConfigError(f"storage.url must be \"sqlite\" or a URL like postgresql://user:password@host/database, "
                          f"not {redacted_url(s.url)!r}")
    if s.is_postgresql:
        import importlib.util

        if importlib.util.find_spec("asyncpg") is None:
            raise ConfigError("storage.url is a PostgreSQL URL but its driver is missing: install the extra, "
                              "pip install 'tigase-rest[postgresql]' (the asyncpg package)")
    for jid in x.deployment:
        if not jid or "@" in jid or "/" in jid:
            raise ConfigError(f"xmpp.deployment: {jid!r} is not a component JID like http1.example.com")
    if x.deployment and x.component_jid not in x.deployment:
        raise ConfigError(f"xmpp.deployment lists the component JIDs of the deployment; this instance's "
                          f"xmpp.component_jid {x.component_jid!r} is not among them")
    if len(set(x.deployment)) > 1 and not s.is_postgresql:
        raise ConfigError("xmpp.deployment names several instances: they share the external statuses through "
                          "PostgreSQL, so set storage.url = \"postgresql://...\" (SQLite files are per instance)")


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def url_password(url: str) -> str | None:
    match = re.search(r"://[^:/@]*:([^@/]*)@", url)
    return match.group(1) if match and match.group(1) else None


def folder_unwritable(folder: Path) -> str | None:
    """Why ``folder`` cannot be written (None when it can), creating nothing: a missing folder is
    made when it is first used, so its nearest existing parent must be writable then. A probe
    file, created and removed, sees read-only mounts and root's rights too. Used by
    ``--check-config``, at start and by ``/readyz``."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a folder")
        probe = existing / f".tigase-rest-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"{existing}: {e.strerror or e}"
    return None


def check_files(cfg: Config) -> None:
    """What the running user must be able to do with the files the config names (done by
    ``--check-config`` and again at start, as the service's own user): read the CA file, write
    ``data_dir`` (created when missing). Raises ConfigError naming the key and the file."""
    uid = os.geteuid()
    ca = cfg.xmpp.c2s_ca_file
    if ca:
        try:
            with open(ca, "rb") as f:
                f.read(1)
        except IsADirectoryError:
            raise ConfigError(f"xmpp.c2s_ca_file: {ca} is a folder, not a CA file") from None
        except OSError as e:
            raise ConfigError(f"xmpp.c2s_ca_file: cannot read {ca}: {e.strerror or e} (as uid {uid})") from None
    for key, value in (("http.tls_cert", cfg.http.tls_cert), ("http.tls_key", cfg.http.tls_key)):
        if value:
            try:
                with open(value, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise ConfigError(f"{key}: cannot read {value}: {e.strerror or e} (as uid {uid})") from None
    if cfg.http.tls_cert:
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cfg.http.tls_cert, cfg.http.tls_key)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"http.tls_cert / http.tls_key: {cfg.http.tls_cert} and {cfg.http.tls_key} "
                              f"are not a matching PEM certificate and key: {e}") from None
    data = cfg.data_path
    problem = folder_unwritable(data)
    if problem is not None:
        raise ConfigError(f"storage.data_dir: {data} is not writable by uid {uid} ({problem}); "
                          "set storage.data_dir, or StateDirectory= under systemd")
