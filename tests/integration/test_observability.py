"""Observable and self-describing (issue 13), against the real Prosody: /metrics moves with the
traffic sent, /livez and /readyz, request ids and JSON logs, the fail2ban filter on real log lines,
the OpenAPI document."""

from __future__ import annotations

import asyncio
import shutil
import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from components import SCRIPTS_DIR
from rest import ADMIN, KEY, basic, call
from tigase_rest.http.openapi import route_paths
from tigase_rest.loader import load_routes
from tools.chromium import ensure_fail2ban

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "etc" / "fail2ban" / "filter.d" / "tigase-rest.conf"
PING = '<iq xmlns="jabber:client" type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>'
MESSAGE = '<message xmlns="jabber:client" type="chat" to="bob@localhost"><body>metrics</body></message>'
XML = {"Content-Type": "application/xml"}


async def metrics(component) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics: (name, sorted labels) -> value."""
    answer = await call(component, "GET", "/metrics", auth=None, headers={"Api-Key": None})
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_with_the_traffic_sent(component, xmpp_client):
    bob = await xmpp_client("bob")
    before = await metrics(component)
    assert value(before, "tigase_rest_xmpp_link_up") == 1
    assert value(before, "tigase_rest_xmpp_link_connects_total") == 1
    assert value(before, "tigase_rest_xmpp_link_reconnects_total") == 0
    assert value(before, "tigase_rest_handler_scripts", state="loaded") == len(list(SCRIPTS_DIR.glob("*/*.py")))
    assert value(before, "tigase_rest_handler_scripts", state="failed") == 0
    assert value(before, "process_resident_memory_bytes") > 0

    for _ in range(3):
        assert (await call(component, "POST", "/rest/stream/", body=MESSAGE, headers=XML)).status == 200
    for _ in range(2):
        assert (await call(component, "POST", "/rest/stream/", body=PING, headers=XML)).status == 200
    assert (await call(component, "GET", "/rest/adhoc/localhost?type=application/json")).status == 200
    assert (await call(component, "GET", "/rest/no-such-folder/x")).status == 404
    wrong = await call(component, "GET", "/rest/adhoc/localhost", auth=basic("alice@localhost", "wrong"))
    assert wrong.status == 401
    status = await call(component, "POST", "/rest/user/alice@localhost/status/metrics",
                        body={"available": "true", "status": "counted"})
    assert status.status == 200 and status.json()["status"]["success"] in (True, "true"), status.text
    for _ in range(3):
        await bob.next_message()

    after = await metrics(component)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tigase_rest_http_requests_total", handler="stream/Stream", method="POST", status="200") == 5
    assert delta("tigase_rest_http_requests_total", handler="adhoc/AdHocCommands", method="GET", status="200") == 1
    assert delta("tigase_rest_http_requests_total", handler="adhoc/AdHocCommands", method="GET", status="401") == 1
    assert delta("tigase_rest_http_requests_total", handler="unknown", method="GET", status="404") == 1
    assert delta("tigase_rest_http_request_duration_seconds_count", handler="stream/Stream") == 5
    assert delta("tigase_rest_http_request_duration_seconds_bucket", handler="stream/Stream", le="+Inf") == 5
    assert delta("tigase_rest_http_request_duration_seconds_sum", handler="stream/Stream") > 0
    # IQs: the two pings over the link; the caller's disco (and its admin check) over its session
    assert delta("tigase_rest_iq_round_trips_total", path="component", outcome="result") >= 2
    assert delta("tigase_rest_iq_duration_seconds_count", path="component") >= 2
    assert delta("tigase_rest_iq_round_trips_total", path="caller", outcome="result") >= 1
    assert value(after, "tigase_rest_iq_pending", path="component") == 0
    assert delta("tigase_rest_caller_logins_total", outcome="ok") >= 1
    assert delta("tigase_rest_caller_logins_total", outcome="failed") == 1
    assert value(after, "tigase_rest_caller_sessions") >= 1
    assert delta("tigase_rest_user_statuses") == 1
    # the scrape itself is counted, under its own bounded label
    assert value(after, "tigase_rest_http_requests_total", handler="metrics", method="GET", status="200") >= 1
    # no JID, key or URL path as a label value anywhere
    labels = {v for (_, pairs) in after for (_, v) in pairs}
    assert not [v for v in labels if "@" in v or "/rest" in v or "test-key" in v]

    # every metric the Grafana dashboard (etc/) queries is exported
    dashboard = json.loads((REPO / "etc" / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:tigase_rest|process)_\w+)\{", target["expr"])}
    assert used and used <= {name for name, _ in after}, used - {name for name, _ in after}

    # limited logins are counted too (max_failures wrong passwords, then the limiter)
    for _ in range(6):
        await call(component, "GET", "/rest/adhoc/localhost", auth=basic("test@localhost", "wrong"))
    limited = await metrics(component)
    assert value(limited, "tigase_rest_caller_logins_total", outcome="limited") >= 1


async def test_metrics_only_for_allowed_addresses(component_factory):
    component = component_factory(metrics={"allow": ["192.0.2.0/24"]})
    answer = await call(component, "GET", "/metrics", auth=None)
    assert answer.status == 403 and "[metrics] allow" in answer.text
    assert "tigase_rest" not in answer.text


async def test_livez_and_readyz(component, component_factory, tmp_path):
    live = await call(component, "GET", "/livez", auth=None, headers={"Api-Key": None})
    assert (live.status, live.json()) == (200, {"status": "live"})
    ready = await call(component, "GET", "/readyz", auth=None, headers={"Api-Key": None})
    assert ready.status == 200, ready.text
    assert ready.json() == {"status": "ready", "xmpp_link": "up", "handlers": "loaded", "data_dir": "writable",
                            "failed_scripts": 0}

    # No XMPP server at that port, and a data_dir that stops being usable after the start (one that
    # cannot be written at start-up stops the start itself: test_config, test_deployment): 503 naming both.
    data = tmp_path / "data"
    broken = component_factory(wait=False, xmpp={"port": 1}, storage={"data_dir": str(data)})
    answer = None
    for _ in range(200):  # the component waits up to 5 s for the link before it serves HTTP
        try:
            answer = await call(broken, "GET", "/readyz", auth=None)
            break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    assert answer is not None and answer.status == 503, answer
    shutil.rmtree(data, ignore_errors=True)
    data.write_text("not a folder any more")  # root writes anywhere: a file where the folder was
    blocker = data
    answer = await call(broken, "GET", "/readyz", auth=None)
    assert answer is not None and answer.status == 503, answer
    report = answer.json()
    assert report["status"] == "not ready: xmpp_link down, data_dir not writable"
    assert (report["xmpp_link"], report["data_dir"], report["handlers"]) == ("down", "not writable", "loaded")
    assert answer.headers["Retry-After"] == "5"
    assert str(blocker) not in answer.text and "secret" not in answer.text  # nothing internal in it
    assert (await call(broken, "GET", "/livez", auth=None)).status == 200


async def test_request_ids_and_json_logs(component_factory):
    component = component_factory(log={"level": "debug", "format": "json"})
    given = "trace-" + uuid.uuid4().hex[:12]
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json&api-key=test-key",
                        headers={"X-Request-Id": given, "Api-Key": None})
    assert answer.status == 200 and answer.headers["X-Request-ID"] == given
    made_up = await call(component, "GET", "/rest/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", made_up.headers["X-Request-ID"])
    wrong = await call(component, "GET", "/rest/health", auth=basic("alice@localhost", "wrong-pw"),
                       headers={"X-Request-Id": "failed-login-1"})
    assert wrong.status == 200  # health needs no login: the Authorization header is not checked
    failed = await call(component, "GET", "/rest/adhoc/localhost", auth=basic("alice@localhost", "wrong-pw"),
                        headers={"X-Request-Id": "failed-login-2"})
    assert failed.status == 401 and failed.headers["X-Request-ID"] == "failed-login-2"

    await asyncio.sleep(0.3)  # the access log line is written after the response
    lines = [json.loads(line) for line in component.log_text().splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == given]
    access = [line for line in mine if line["logger"] == "aiohttp.access"]
    assert len(access) == 1, mine
    entry = access[0]
    assert entry["method"] == "GET" and entry["path"] == "/rest/adhoc/localhost"  # no query string
    assert entry["status"] == 200 and entry["bytes"] > 0 and entry["duration_ms"] >= 0
    assert entry["caller"] == "admin@localhost" and entry["client"] == "127.0.0.1"
    assert entry["key"] == hashlib.sha256(b"test-key").hexdigest()[:8]
    assert entry["handler"] == "adhoc/AdHocCommands"
    others = {line["logger"] for line in mine} - {"aiohttp.access"}
    assert others, "the request's other lines (its login, in a task of its own) carry its id too"
    warning = [line for line in lines if line.get("request_id") == "failed-login-2" and line["level"] == "WARNING"]
    assert [line["message"] for line in warning] == ["Login failed for alice@localhost from 127.0.0.1"]
    assert "test-key" not in component.log_text() and "wrong-pw" not in component.log_text()


async def test_named_key_in_the_access_log(component_factory):
    component = component_factory(auth={"api_keys": [{"key": "named-key-123", "name": "billing"}]},
                                  log={"level": "info", "format": "text"})
    answer = await call(component, "GET", "/rest/health", headers={"Api-Key": "named-key-123", "X-Request-Id": "k1"})
    assert answer.status == 200
    await asyncio.sleep(0.3)
    line = next(line for line in component.log_text().splitlines() if "aiohttp.access [k1]" in line)
    assert re.search(r"127\.0\.0\.1 GET /rest/health 200 [\d.]+ms \d+B caller=- key=billing$", line), line
    assert "named-key-123" not in component.log_text()


async def test_access_log_off_still_counts_and_logs_the_rest(component_factory):
    component = component_factory(log={"level": "info", "format": "text", "access": False}, auth={"max_failures": 5})
    assert (await call(component, "GET", "/rest/health", headers={"X-Request-Id": "quiet-1"})).status == 200
    failed = await call(component, "GET", "/rest/adhoc/localhost", auth=basic("bob@localhost", "guess"),
                        headers={"X-Request-Id": "quiet-2"})
    assert failed.status == 401
    await asyncio.sleep(0.3)
    log = component.log_text()
    assert "aiohttp.access" not in log  # no request line ...
    assert "[quiet-2]" in log and "Login failed for bob@localhost from 127.0.0.1" in log  # ... the rest is there
    samples = await metrics(component)
    assert value(samples, "tigase_rest_http_requests_total", handler="health/Health", method="GET", status="200") == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_fail2ban_filter_matches_real_log_lines(component_factory, fmt, tmp_path):
    component = component_factory(log={"level": "info", "format": fmt}, auth={"max_failures": 2})
    for _ in range(3):  # two failures, then the limiter
        await call(component, "GET", "/rest/adhoc/localhost", auth=basic("bob@localhost", "guess"))
    await asyncio.sleep(0.3)
    lines = [line for line in component.log_text().splitlines() if "Login " in line and "bob@localhost" in line]
    assert len(lines) == 3, lines
    assert sum("Login failed for bob@localhost from 127.0.0.1" in line for line in lines) == 2
    assert sum("Login limited for bob@localhost from 127.0.0.1: " in line for line in lines) == 1

    # The filter's own pattern, with fail2ban's <HOST> as a named group for plain re.
    failregex = re.search(r"^failregex = (.+)$", FILTER.read_text(), re.M).group(1)
    pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))
    hosts = [m.group("host") for m in map(pattern.search, component.log_text().splitlines()) if m]
    assert hosts == ["127.0.0.1"] * 3

    fail2ban_regex = ensure_fail2ban()
    if fail2ban_regex is not None:  # Debian's fail2ban: the same filter file, as fail2ban reads it
        log_file = tmp_path / "component.log"
        log_file.write_text(component.log_text())
        out = subprocess.run([fail2ban_regex, str(log_file), str(FILTER)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.search(r"Failregex: 3 total", out.stdout), out.stdout
        assert re.search(r"127\.0\.0\.1\s+\(", out.stdout) or "127.0.0.1" in out.stdout


async def test_openapi_document_validates_and_lists_every_route(component):
    answer = await call(component, "GET", "/rest/openapi.json", auth=None, headers={"Api-Key": None})
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    validate(document)  # openapi-spec-validator: OpenAPI 3.1
    assert document["openapi"] == "3.1.0"
    routes = load_routes(SCRIPTS_DIR).routes()
    assert routes
    for route in routes:
        for template in route_paths(route):
            item = document["paths"]["/rest" + template]
            for method in route.handler.methods():
                assert method.lower() in item, (template, method)
    for path in ("/metrics", "/livez", "/readyz", "/rest/openapi.json", "/rest/"):
        assert path in document["paths"]
    adhoc = document["paths"]["/rest/adhoc/{jid}"]
    assert adhoc["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CommandRequest"}
    assert "application/xml" in adhoc["get"]["responses"]["200"]["content"]
    assert adhoc["get"]["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert {"ApiKeyHeader": [], "BasicAuth": []} in adhoc["get"]["security"]
    assert set(document["components"]["securitySchemes"]) == {"ApiKeyHeader", "ApiKeyQuery", "BasicAuth"}
    assert [p["name"] for p in adhoc["get"]["parameters"] if p["in"] == "path"] == ["jid"]
    avatar = document["paths"]["/rest/avatar/{user-jid}/{source}"]["get"]
    assert next(p for p in avatar["parameters"] if p["name"] == "source")["schema"]["enum"] == [
        "avatar", "vcard4", "vcard-temp"]
    assert "put" in document["paths"]["/rest/avatar/{user-jid}"]
    # the document carries nothing secret
    assert "test-key" not in answer.text and component.config["xmpp"]["secret"] not in answer.text
    # an operation described there works as described
    ping = await call(component, "GET", "/rest/health?type=application/json", headers=KEY, auth=ADMIN)
    assert ping.status == 200
