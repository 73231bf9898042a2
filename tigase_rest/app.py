"""The one lifecycle owner: builds the parts, wires each to only what it uses, runs, stops.

Start: XMPP link (in the background: HTTP answers 503 until it is up), caller pool, HTTP.
Stop (SIGTERM/SIGINT): HTTP first (stop accepting, let in-flight requests finish, bounded),
then the webhooks (their queue stays on disk), the external statuses, the caller sessions, then the component link: one ``AsyncExitStack``
unwinds them in that order, also when start-up fails halfway. SIGHUP reloads the handler scripts
and the [auth] section without dropping in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import ssl
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import config as config_mod
from . import logs
from .config import Config
from .features.accounts.service import Accounts
from .features.apikeys import commands as apikey_commands
from .features.apikeys.service import ApiKeys
from .features.apikeys.store import STORE_NAME as APIKEYS_NAME
from .features.apikeys.store import ApiKeyStore, StoreError
from .features.avatar.service import Avatars
from .features.bosh import BoshPrebinding
from .features.presence.service import ExternalStatuses
from .features.presence.store import STORE_NAME, PostgresStatusStore, SqliteStatusStore, StatusStore
from .features.webhooks.service import Webhooks
from .features.webhooks.store import STORE_NAME as QUEUE_NAME
from .features.webhooks.store import QueueStore
from .http.auth import ApiKeyChecker
from .http.server import Current, RestServer
from .loader import RouteTable, routes_for
from .metrics import ComponentCollector, Metrics
from .service import Parts
from .storage import Database
from .xmpp import commands
from .xmpp.component import ComponentLink
from .xmpp.privilege import PrivilegeTracker
from .xmpp.sessions import CallerPool

log = logging.getLogger(__name__)

STARTUP_LINK_WAIT = 5.0  # seconds


class Reloader:
    """SIGHUP and the ``reload-handlers`` command: a new ``Current`` (scripts, [auth], API keys),
    applied to the caller pool and the log redaction too. In-flight requests keep the old one."""

    def __init__(self, current: Current, config_path: Path | None, pool: CallerPool,
                 redactor: logs.RedactingFilter | None,
                 make_checker: Callable[[Config], ApiKeyChecker] = lambda c: ApiKeyChecker(c.auth),
                 more_secrets: Callable[[], list[str]] = lambda: []):
        self.current = current
        self.config_path = config_path
        self.pool = pool
        self.redactor = redactor
        self.make_checker = make_checker  # the config's keys beside the stored ones
        self.more_secrets = more_secrets  # the stored API keys

    def redact(self) -> None:
        """The log redaction learns the running config's secrets and the stored keys."""
        if self.redactor is not None:
            self.redactor.secrets = logs.RedactingFilter(secrets_of(self.current.config) + self.more_secrets()).secrets

    def get(self) -> Current:
        return self.current

    def is_admin(self, bare_jid: str) -> bool:
        """Listed in [auth] admins, or verified by a recent login as an admin of the server."""
        return bare_jid in self.current.config.auth.admins or self.pool.known_admin(bare_jid)

    def reload(self) -> RouteTable:
        config = self.current.config
        if self.config_path is not None:
            try:
                fresh = config_mod.load(self.config_path)
            except config_mod.ConfigError as e:
                log.error("Reload: config not reloaded, keeping the running one: %s", e)
            else:
                applied, restart = changed_keys(config, fresh)
                for key in restart:
                    log.warning("Reload: %s changed; it needs a restart (the running value stays)", key)
                config = dataclasses.replace(
                    config, auth=fresh.auth,
                    http=dataclasses.replace(config.http, **{k: getattr(fresh.http, k) for k in RELOADABLE_HTTP}))
                self.pool.apply(config)
                log.info("Reload: applied %s", ", ".join(applied) if applied else "no config changes")
        self.current = Current(config, routes_for(config), self.make_checker(config))
        self.redact()
        log.info("Reload: handler scripts reloaded (%d handlers, %d scripts failed)",
                 len(self.current.routes.routes()), len(self.current.routes.errors))
        return self.current.routes


# What a reload applies: all of [auth] and where the handler scripts come from; any other changed key
# is named in a warning and needs a restart.
RELOADABLE_HTTP = ("scripts_dir", "builtin_scripts")


def changed_keys(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(changed keys a reload applies, changed keys that need a restart), as "section.key" names
    (never their values: some are secrets)."""
    applied: list[str] = []
    restart: list[str] = []
    for section in config_mod.SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        for f in dataclasses.fields(before):
            if getattr(before, f.name) != getattr(after, f.name):
                name = f"{section}.{f.name}"
                (applied if section == "auth" or (section == "http" and f.name in RELOADABLE_HTTP) else restart).append(name)
    return applied, restart


def secrets_of(config: Config) -> list[str]:
    return [config.xmpp.secret, *([config.webhooks.secret] if config.webhooks.secret else []),
            *([config.bootstrap_api_key] if config.bootstrap_api_key else []),
            *(k.key for k in config.auth.api_keys if k.key != "open_access"), *store_secrets(config)]


def store_secrets(config: Config) -> list[str]:
    """The password in ``[storage] url``, as written and percent-decoded."""
    from urllib.parse import unquote

    password = config_mod.url_password(config.storage.url)
    return [password, unquote(password)] if password else []


def status_store(config: Config, database: Database | None) -> StatusStore:
    """``[storage] url``: SQLite in data_dir (one instance), or the deployment's PostgreSQL."""
    if database is not None:
        return PostgresStatusStore(database, config.xmpp.component_jid)
    return SqliteStatusStore(config.data_path / STORE_NAME)


def health_counters(link: ComponentLink, pool: CallerPool, reloader: Reloader, started: float,
                    webhooks: Webhooks | None = None) -> dict[str, Any]:
    up = link.connected
    routes = reloader.current.routes
    return {
        "xmpp_link": "up" if up else "down",
        "component_jid": link.config.component_jid,
        "link_connects": link.connects,
        "pending_iqs": link.pending_count,
        "caller_sessions": pool.session_count,
        "caller_pending_iqs": pool.pending_count,
        "caller_logins": pool.logins,
        "handlers": len(routes.routes()),
        "failed_scripts": len(routes.errors),
        "uptime_s": round(time.monotonic() - started, 1),
        **(webhooks.counters() if webhooks is not None else {"webhooks": "off"}),
    }


async def serve(config: Config, config_path: Path | None = None,
                redactor: logs.RedactingFilter | None = None) -> int:
    started = time.monotonic()
    stopping = asyncio.Event()  # set when shutdown starts: requests still reading a body give up
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        x = config.xmpp
        link = ComponentLink(x, plugins=commands.PLUGINS)
        privileges = PrivilegeTracker(link, x.domain)
        database = Database(config.storage.url) if config.storage.is_postgresql else None
        statuses = ExternalStatuses(link, x.domain, privileges, status_store(config, database),
                                    config.presence.max_statuses_per_user, config.presence.max_statuses)
        pool = CallerPool(config)
        webhooks = None
        if config.webhooks.url:
            webhooks = Webhooks(config.webhooks, x.component_jid, x.domain, link, privileges,
                                QueueStore(config.data_path / QUEUE_NAME), x.max_stanza_bytes)
        apikeys = ApiKeys(ApiKeyStore(config.data_path / APIKEYS_NAME),
                          lambda: reloader.current.config.auth.api_keys, on_change=lambda: reloader.redact())
        try:
            apikeys.load()
        except StoreError as e:
            log.error("Cannot start: %s", e)
            return 1
        stack.callback(apikeys.close)

        def make_checker(c: Config) -> ApiKeyChecker:
            return ApiKeyChecker(c.auth, apikeys.stored, config.bootstrap_api_key)

        reloader = Reloader(Current(config, routes_for(config), make_checker(config)), config_path, pool, redactor,
                            make_checker, lambda: [k.key for k in apikeys.stored() if k.key != "open_access"])
        reloader.redact()
        log_bootstrap(config, apikeys)
        parts = Parts(link=link, pool=pool, privileges=privileges, statuses=statuses,
                      avatars=Avatars(link, privileges), bosh=BoshPrebinding(x, config.auth.max_prebinds_per_minute),
                      accounts=Accounts(),
                      health=lambda: health_counters(link, pool, reloader, started, webhooks), stopping=stopping,
                      webhooks=webhooks)

        link.on_setup(privileges.setup)
        link.on_setup(statuses.setup)
        if webhooks is not None:
            link.on_setup(webhooks.setup)
        link.on_setup(lambda xmpp: commands.register(
            xmpp, x.component_jid, reloader.is_admin, reloader.reload,
            lambda forget: apikey_commands.handlers(apikeys, reloader.is_admin, forget)))

        # Pushed in start order; unwound in reverse: HTTP, statuses, caller sessions, link.
        link.start()
        stack.push_async_callback(link.stop)
        pool.start()
        stack.push_async_callback(pool.close)
        if database is not None:
            stack.push_async_callback(database.close)  # after the statuses (unwound in reverse)
        stack.push_async_callback(statuses.close)
        if webhooks is not None:
            # Started before the link is up: queued messages wait in the workers until it is.
            await webhooks.start()
            stack.push_async_callback(webhooks.close)
        # A short, bounded head start: requests right after start-up find the link up instead of a 503.
        if not await link.wait_connected(STARTUP_LINK_WAIT):
            log.warning("XMPP link not up after %ss; serving HTTP anyway (503 until it connects)", STARTUP_LINK_WAIT)

        metrics = Metrics(config.metrics.allow, process=True)  # per process: never the library's global registry
        rest = RestServer(reloader.get, pool.authenticate, parts, metrics)
        metrics.add(ComponentCollector(link, pool, statuses, lambda: reloader.current.routes, lambda: rest.server))
        runner = web.ServerRunner(rest.web_server(), handle_signals=False,
                                  shutdown_timeout=x.iq_timeout + 5)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        stack.callback(stopping.set)  # requests still reading a body give up before the runner waits for them
        try:
            await web.TCPSite(runner, config.http.host, config.http.port, ssl_context=https_context(config),
                              reuse_port=config.http.reuse_port or None).start()
        except OSError as e:
            hint = (" (another process listens there; instances that share a port all need [http] reuse_port = "
                    "true and the same user)") if e.errno == errno.EADDRINUSE else ""
            log.error("Cannot listen on %s:%s: %s%s", config.http.host, config.http.port, e.strerror or e, hint)
            return 1
        log.info("HTTP API listening on %s://%s:%s%s/", "https" if config.http.tls_cert else "http",
                 config.http.host, config.http.port, config.http.prefix)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            stack.callback(loop.remove_signal_handler, sig)
        await stopping.wait()
        log.info("Shutting down: HTTP first, then XMPP")
    log.info("Stopped")
    return 0


def log_bootstrap(config: Config, apikeys: ApiKeys) -> None:
    """Say whether TIGASE_REST_BOOTSTRAP_API_KEY works (never its value)."""
    if not config.bootstrap_api_key:
        return
    if config.auth.open_access:
        log.warning("TIGASE_REST_BOOTSTRAP_API_KEY is set, but auth.open_access = true: no key is needed")
    elif config.auth.api_keys or apikeys.stored():
        log.info("TIGASE_REST_BOOTSTRAP_API_KEY is set but not in use: other API keys exist")
    else:
        log.warning("TIGASE_REST_BOOTSTRAP_API_KEY is the only API key: add one with the api-key-add command "
                    "on %s, and the bootstrap key stops working", config.xmpp.component_jid)


def https_context(config: Config) -> ssl.SSLContext | None:
    """Native HTTPS (http.tls_cert and http.tls_key), for a deployment without a reverse proxy."""
    if not config.http.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.http.tls_cert, config.http.tls_key)
    return context


def run(config: Config, config_path: Path | None = None) -> int:
    redactor = logs.setup(config.log.level, secrets_of(config), config.log.format)
    return asyncio.run(serve(config, config_path, redactor))
