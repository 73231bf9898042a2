"""``GET /metrics``: what the process does, in Prometheus' text format (prometheus-client).

One ``CollectorRegistry`` per process (built in ``app.serve``; never the library's global one, so
tests can run several). Nothing here sits on the request path but :meth:`HttpStats.observe`, a
few dict and list updates per request: the collectors read, at scrape time, the plain counters
the parts keep anyway (``link.connects``, ``pool.session_count``, ``IqStats``...).

Labels are bounded: ``handler`` is the route's ``folder/Class`` (or one of a few fixed names:
``index``, ``openapi``, ``static``, ``metrics``, ``livez``, ``readyz``, ``unknown``), ``method``
one of the HTTP methods or ``other``, ``status`` the status code, ``path`` ``component`` or
``caller``. No JID, key or URL path is ever a label value.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .xmpp.iq import IQ_BUCKETS, IqStats

if TYPE_CHECKING:
    from .features.presence.service import ExternalStatuses
    from .loader import RouteTable
    from .xmpp.component import ComponentLink
    from .xmpp.sessions import CallerPool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "tigase_rest"
# Seconds: request latency upper bounds (a trivial GET takes ~0.1 ms, an IQ timeout 30 s).
HTTP_BUCKETS = IQ_BUCKETS
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))


class _Latency:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(HTTP_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0


class HttpStats:
    """Requests by (handler, method, status) and latency by handler: plain counters."""

    __slots__ = ("requests", "latency")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Latency] = {}

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (handler, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        latency = self.latency.get(handler)
        if latency is None:
            latency = self.latency[handler] = _Latency()
        latency.buckets[bisect.bisect_left(HTTP_BUCKETS, seconds)] += 1
        latency.count += 1
        latency.sum += seconds


def _histogram(family: HistogramMetricFamily, labels: list[str], buckets: list[int], total: float) -> None:
    cumulative, running = [], 0
    for bound, count in zip((*(repr(b) for b in HTTP_BUCKETS), "+Inf"), buckets):
        running += count
        cumulative.append((bound, running))
    family.add_metric(labels, cumulative, total)


class HttpCollector(Collector):
    def __init__(self, stats: HttpStats):
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(f"{PREFIX}_http_requests", "HTTP requests answered, by handler, method and status",
                                       labels=["handler", "method", "status"])
        for (handler, method, status), count in sorted(self.stats.requests.items()):
            requests.add_metric([handler, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(f"{PREFIX}_http_request_duration_seconds",
                                        "Time from the request head to the response written, by handler",
                                        labels=["handler"])
        for handler, hist in sorted(self.stats.latency.items()):
            _histogram(latency, [handler], hist.buckets, hist.sum)
        yield latency


class ComponentCollector(Collector):
    """The XMPP side and the process's state, read from the parts at scrape time."""

    def __init__(self, link: "ComponentLink", pool: "CallerPool", statuses: "ExternalStatuses",
                 routes: Callable[[], "RouteTable"], http_server: Callable[[], Any] = lambda: None):
        self.link = link
        self.pool = pool
        self.statuses = statuses
        self.routes = routes
        self.http_server = http_server

    def collect(self) -> Iterator[Metric]:
        yield from _iq_metrics({"component": (self.link.iq_stats, self.link.pending_count),
                                "caller": (self.pool.iq_stats, self.pool.pending_count)})
        yield GaugeMetricFamily(f"{PREFIX}_xmpp_link_up", "1 when the XEP-0114 link to the server is up",
                                value=1 if self.link.connected else 0)
        connects = self.link.connects
        yield CounterMetricFamily(f"{PREFIX}_xmpp_link_connects", "Accepted component handshakes", value=connects)
        yield CounterMetricFamily(f"{PREFIX}_xmpp_link_reconnects",
                                  "Accepted handshakes after the first (the link was lost and came back)",
                                  value=max(0, connects - 1))
        yield GaugeMetricFamily(f"{PREFIX}_caller_sessions", "Pooled c2s sessions of callers",
                                value=self.pool.session_count)
        logins = CounterMetricFamily(f"{PREFIX}_caller_logins", "Basic-auth checks that needed a login, by outcome",
                                     labels=["outcome"])
        for outcome in ("ok", "failed", "limited"):
            logins.add_metric([outcome], self.pool.login_outcomes[outcome])
        yield logins
        yield CounterMetricFamily(f"{PREFIX}_caller_sasl_logins", "SASL logins done for callers (re-logins included)",
                                  value=self.pool.logins)
        yield GaugeMetricFamily(f"{PREFIX}_user_statuses", "External user statuses stored (/rest/user/{jid}/status)",
                                value=self.statuses.count)
        routes = self.routes()
        scripts = GaugeMetricFamily(f"{PREFIX}_handler_scripts", "Handler scripts by load state", labels=["state"])
        scripts.add_metric(["loaded"], len({r.script for r in routes.routes()}))
        scripts.add_metric(["failed"], len(routes.errors))
        yield scripts
        yield GaugeMetricFamily(f"{PREFIX}_handlers", "Handler classes serving routes", value=len(routes.routes()))
        server = self.http_server()
        if server is not None:
            yield GaugeMetricFamily(f"{PREFIX}_http_connections", "Open HTTP connections", value=server.open_connections)
            yield CounterMetricFamily(f"{PREFIX}_http_connections_refused",
                                      "HTTP connections refused past http.max_connections",
                                      value=server.refused_connections)
        info = InfoMetricFamily(f"{PREFIX}_build", "The running version")
        info.add_metric([], {"version": __version__})
        yield info


def _iq_metrics(paths: dict[str, tuple[IqStats, int]]) -> Iterable[Metric]:
    trips = CounterMetricFamily(f"{PREFIX}_iq_round_trips", "IQ requests by path (component link or caller session) "
                                "and outcome (result, error, timeout, failed)", labels=["path", "outcome"])
    latency = HistogramMetricFamily(f"{PREFIX}_iq_duration_seconds", "Time to an IQ's reply (result or error), by path",
                                    labels=["path"])
    pending = GaugeMetricFamily(f"{PREFIX}_iq_pending", "IQs waiting for a reply, by path", labels=["path"])
    for path, (stats, waiting) in paths.items():
        trips.add_metric([path, "result"], stats.count - stats.errors)
        trips.add_metric([path, "error"], stats.errors)
        trips.add_metric([path, "timeout"], stats.timeouts)
        trips.add_metric([path, "failed"], stats.failed)
        _histogram(latency, [path], stats.buckets, stats.sum)
        pending.add_metric([path], waiting)
    return (trips, latency, pending)


class Metrics:
    """The process's registry and the HTTP counters the server updates."""

    def __init__(self, allow: Iterable[str] = ("127.0.0.0/8", "::1/128"), process: bool = False):
        self.registry = CollectorRegistry()
        self.http = HttpStats()
        self.registry.register(HttpCollector(self.http))
        if process:  # process_* (CPU, memory, fds) and python_info: once per process
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.allow = [ipaddress.ip_network(cidr, strict=False) for cidr in allow]

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def allowed(self, remote: str | None) -> bool:
        try:
            address = ipaddress.ip_address((remote or "").split("%", 1)[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    def render(self) -> bytes:
        return generate_latest(self.registry)
