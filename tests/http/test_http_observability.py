"""/metrics, /livez, /readyz, X-Request-Id, /rest/openapi.json and the console's files, with the
XMPP side faked (the same against Prosody: tests/integration/test_observability.py)."""

from __future__ import annotations

import io
import json
import logging

from openapi_spec_validator import validate

from fakes import API_KEY
from tigase_rest.logs import JsonFormatter, RedactingFilter, RequestIdFilter


async def test_probes_and_metrics(api):
    live = await api.get("/livez")
    assert live.status == 200 and await live.json() == {"status": "live"}
    ready = await api.get("/readyz")
    assert ready.status == 200, await ready.text()
    api.link.connected = False
    ready = await api.get("/readyz")
    assert ready.status == 503 and (await ready.json())["status"] == "not ready: xmpp_link down"
    api.link.connected = True
    await api.get("/rest/health", headers={"Api-Key": API_KEY})
    await api.get("/rest/nothing-here")
    metrics = await api.get("/metrics")
    text = await metrics.text()
    assert metrics.status == 200
    assert 'tigase_rest_http_requests_total{handler="health/Health",method="GET",status="200"} 1.0' in text
    assert 'tigase_rest_http_requests_total{handler="unknown",method="GET",status="404"} 1.0' in text
    assert 'tigase_rest_http_requests_total{handler="readyz",method="GET",status="503"} 1.0' in text
    assert 'tigase_rest_http_request_duration_seconds_count{handler="health/Health"} 1.0' in text


async def test_request_id_kept_when_plain_else_made_up(api):
    kept = await api.get("/livez", headers={"X-Request-Id": "abc-123_x"})
    assert kept.headers["X-Request-Id"] == "abc-123_x"
    for bad in ("a" * 65, "two words", "<script>"):
        made = await api.get("/livez", headers={"X-Request-Id": bad})
        assert made.headers["X-Request-Id"] != bad and len(made.headers["X-Request-Id"]) < 30
    ids = {(await api.get("/livez")).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


async def test_openapi_and_console_files(api):
    answer = await api.get("/rest/openapi.json")
    assert answer.status == 200
    validate(await answer.json())
    page = await api.get("/rest/")
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self' covers scripts
    html = await page.text()
    assert "/rest/static/console.js" in html and 'id="console"' in html and "/rest/openapi.json" in html
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        static = await api.get(f"/rest/static/{name}")
        assert static.status == 200 and static.headers["Content-Type"].startswith(kind)
    assert (await api.get("/rest/static/../config.py")).status == 404
    assert (await api.post("/rest/openapi.json")).status == 404


def test_json_lines_are_redacted_and_carry_the_request_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(["sup3r-secret"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("secret %s and Authorization: Basic YWJjOmRlZg==", "sup3r-secret", extra={"request_id": "r1"})
        try:
            raise ValueError("sup3r-secret inside")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "r1" and first["level"] == "WARNING" and first["logger"] == "test.json"
    assert "sup3r-secret" not in stream.getvalue() and "YWJjOmRlZg" not in stream.getvalue()
    assert "request_id" not in second and "ValueError" in second["exception"]


async def test_grafana_dashboard_uses_only_exported_metrics(api):
    import re
    from fakes import REPO

    text = await (await api.get("/metrics")).text()
    exported = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    counters = {name + "_total" for name in re.findall(r"^# TYPE (\w+) counter", text, re.M)}
    histograms = {name + "_bucket" for name in re.findall(r"^# TYPE (\w+) histogram", text, re.M)}
    dashboard = json.loads((REPO / "etc" / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:tigase_rest|process)_\w+)\{", target["expr"])}
    component_side = {"tigase_rest_iq_round_trips_total", "tigase_rest_iq_duration_seconds_bucket",
                      "tigase_rest_xmpp_link_up", "tigase_rest_xmpp_link_reconnects_total",
                      "tigase_rest_caller_logins_total", "tigase_rest_caller_sessions", "tigase_rest_iq_pending",
                      "tigase_rest_user_statuses", "tigase_rest_handler_scripts", "process_cpu_seconds_total",
                      "process_resident_memory_bytes"}  # added by app.serve's collectors (checked on Prosody)
    assert used - component_side <= exported | counters | histograms, used
