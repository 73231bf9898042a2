"""The one lifecycle owner: XMPP component link, caller session pool, HTTP server, signals.

Start: XMPP link (in the background: HTTP answers 503 until it is up), caller pool, HTTP.
Stop (SIGTERM/SIGINT): HTTP first (stop accepting, let in-flight requests finish, bounded),
then the caller sessions, then the component link. SIGHUP reloads the handler scripts and the
[auth] section without dropping in-flight requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from pathlib import Path

from aiohttp import web
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from . import config as config_mod
from . import logs
from .config import Config
from .http.auth import ApiKeyChecker
from .http.server import RestServer
from .loader import RouteTable, load_routes
from .xmpp import commands
from .xmpp.component import ComponentLink
from .xmpp.presence import ExternalStatuses
from .xmpp.privilege import GRANT_NAMESPACES, Privileges
from .xmpp.sessions import CallerPool
from .xmpp.stanzas import COMPONENT_NS

log = logging.getLogger(__name__)

STARTUP_LINK_WAIT = 5.0  # seconds


class Runtime:
    """Everything a request needs; handed to handlers through ``Service``."""

    def __init__(self, config: Config, config_path: Path | None = None):
        self.config = config
        self.config_path = config_path
        self.started = time.monotonic()
        self.link = ComponentLink(config.xmpp, plugins=commands.PLUGINS)
        self.link.on_setup(lambda xmpp: commands.register(xmpp, self))
        self.link.on_setup(self._watch_privileges)
        self.privileges = Privileges()  # what the server granted (XEP-0356); none until it says
        self.statuses = ExternalStatuses(self)  # presence shown for users without a session (/rest/user/*/status)
        self.link.on_setup(self.statuses.setup)
        self.pool = CallerPool(config)
        self.api_keys = ApiKeyChecker(config.auth)
        self.routes: RouteTable = load_routes(config.scripts_path)
        self.redactor: logs.RedactingFilter | None = None
        self.stopping = asyncio.Event()  # set when shutdown starts: requests still reading a body give up

    def _watch_privileges(self, xmpp) -> None:
        def on_privilege(message) -> None:
            if message["from"].bare != self.config.xmpp.domain:
                return  # only the server itself grants privileges
            tags = {f"{{{ns}}}privilege" for ns in GRANT_NAMESPACES}
            self.privileges = Privileges.parse(next(child for child in message.xml if child.tag in tags))
            log.info("XEP-0356 privileges from %s: %s", self.config.xmpp.domain, self.privileges)

        for ns in GRANT_NAMESPACES:
            xmpp.register_handler(Callback(
                f"xep-0356 privileges {ns}", MatchXPath(f"{{{COMPONENT_NS}}}message/{{{ns}}}privilege"), on_privilege))

    def is_admin(self, bare_jid: str) -> bool:
        """Listed in [auth] admins, or verified by a recent login as an admin of the server."""
        return bare_jid in self.config.auth.admins or self.pool.known_admin(bare_jid)

    def reload(self) -> None:
        """Reload scripts and [auth]; in-flight requests keep the objects they already hold."""
        if self.config_path is not None:
            try:
                fresh = config_mod.load(self.config_path)
            except config_mod.ConfigError as e:
                log.error("Reload: config not reloaded, keeping the running one: %s", e)
            else:
                if fresh.xmpp != self.config.xmpp or fresh.http != self.config.http:
                    log.warning("Reload: [xmpp] and [http] changes need a restart; applying [auth] only")
                self.config = dataclasses.replace(self.config, auth=fresh.auth)
                self.api_keys = ApiKeyChecker(fresh.auth)
                self.pool.apply(self.config)
                if self.redactor is not None:
                    self.redactor.secrets = logs.RedactingFilter(secrets_of(self.config)).secrets
        self.routes = load_routes(self.config.scripts_path)


def secrets_of(config: Config) -> list[str]:
    return [config.xmpp.secret, *(k.key for k in config.auth.api_keys if k.key != "open_access")]


async def serve(config: Config, config_path: Path | None = None,
                redactor: logs.RedactingFilter | None = None) -> int:
    runtime = Runtime(config, config_path)
    runtime.redactor = redactor
    runtime.link.start()
    runtime.pool.start()
    # A short, bounded head start: requests right after start-up find the link up instead of a 503.
    if not await runtime.link.wait_connected(STARTUP_LINK_WAIT):
        log.warning("XMPP link not up after %ss; serving HTTP anyway (503 until it connects)", STARTUP_LINK_WAIT)
    rest = RestServer(runtime)
    runner = web.ServerRunner(web.Server(rest.handle, **rest.server_kwargs()), handle_signals=False,
                              shutdown_timeout=config.xmpp.iq_timeout + 5)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    try:
        await site.start()
    except OSError as e:
        log.error("Cannot listen on %s:%s: %s", config.http.host, config.http.port, e.strerror or e)
        await runner.cleanup()
        await runtime.statuses.close()
        await runtime.pool.close()
        await runtime.link.stop()
        return 1
    log.info("HTTP API listening on http://%s:%s%s/", config.http.host, config.http.port,
             config.http.prefix)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runtime.stopping.set)
    loop.add_signal_handler(signal.SIGINT, runtime.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, runtime.reload)
    try:
        await runtime.stopping.wait()
    finally:
        runtime.stopping.set()  # also when leaving by an exception
        log.info("Shutting down: HTTP first, then XMPP")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await runtime.statuses.close()
        await runtime.pool.close()
        await runtime.link.stop()
    log.info("Stopped")
    return 0


def run(config: Config, config_path: Path | None = None) -> int:
    redactor = logs.setup(config.log.level, secrets_of(config))
    return asyncio.run(serve(config, config_path, redactor))
