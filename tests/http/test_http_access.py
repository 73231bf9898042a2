"""What every request goes through: the index page, routing, API key, login and role, body size,
and error bodies in the negotiated format."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest

from fakes import ADMIN, ALICE, API_KEY, LOCKED, MAX_BODY, admin_headers, basic
from tigase_rest import errors

MESSAGE = b"<message xmlns='jabber:client' to='bob@example.com'><body>hi</body></message>"


def xml_error(text: str) -> dict:
    root = ET.fromstring(text)
    assert root.tag == "error"
    return {child.tag: child.text for child in root}


# --- index ------------------------------------------------------------------------------------


async def test_index_page_needs_no_key_and_lists_stream(api):
    for path in ("/rest/", "/rest"):
        response = await api.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await response.text()
        assert "/stream/[{to-jid}]" in html
        assert ">POST<" in html
        assert "Send any XMPP stanza" in html
        assert API_KEY not in html


async def test_outside_the_context_path_is_404_with_the_reason(api):
    response = await api.get("/elsewhere")
    assert response.status == 404
    assert "under /rest/" in xml_error(await response.text())["reason"]


# --- routing ----------------------------------------------------------------------------------


async def test_unknown_path_is_404_with_the_reason(api):
    response = await api.get("/rest/nothing/here", headers={"Api-Key": API_KEY})
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert xml_error(await response.text()) == {"status": "404", "reason": "No handler for /rest/nothing/here"}


async def test_unsupported_method_is_404_as_tigase_with_the_reason(api):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = await api.request(method, "/rest/stream/", headers=admin_headers())
        assert response.status == 404, method
        reason = xml_error(await response.text())["reason"]
        assert reason == f"{method} is not supported on /rest/stream/ (supported: POST)"


# --- API key ----------------------------------------------------------------------------------


async def test_missing_api_key_is_403(api):
    response = await api.post("/rest/stream/", data=MESSAGE,
                              headers={"Authorization": basic(ADMIN), "Content-Type": "application/xml"})
    assert response.status == 403
    assert xml_error(await response.text())["reason"].startswith("Missing required 'Api-Key' header")
    assert api.link.sent == [] and api.pool.logins == []  # refused before any login


async def test_bad_api_key_is_403_naming_the_path(api):
    response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers(**{"Api-Key": "wrong"}))
    assert response.status == 403
    assert xml_error(await response.text())["reason"] == "Provided Api-Key is not authorized to access /rest/stream/"
    assert api.link.sent == []


async def test_api_key_as_query_parameter(api):
    headers = admin_headers()
    del headers["Api-Key"]
    response = await api.post(f"/rest/stream/?api-key={API_KEY}", data=MESSAGE, headers=headers)
    assert response.status == 200
    assert len(api.link.sent) == 1


async def test_undecodable_api_key_bytes_are_403_not_500(api):
    reader, writer = await asyncio.open_connection(api.client.server.host, api.client.server.port)
    writer.write(b"POST /rest/stream/ HTTP/1.1\r\nHost: localhost\r\nApi-Key: \xff\xfe\r\n"
                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"403"


async def test_key_limited_to_a_host_and_paths(make_api):
    api = await make_api(auth={"api_keys": [{"key": "limited", "domains": ["api.example.com"],
                                             "paths": ["/rest/stream/.*"]}]})
    headers = admin_headers(**{"Api-Key": "limited"})
    ok = await api.post("/rest/stream/x@example.com", data=MESSAGE, headers={**headers, "Host": "api.example.com"})
    assert ok.status == 200
    wrong_host = await api.post("/rest/stream/x@example.com", data=MESSAGE, headers={**headers, "Host": "other.net"})
    assert wrong_host.status == 403
    wrong_path = await api.post("/rest/stream", data=MESSAGE, headers={**headers, "Host": "api.example.com"})
    assert wrong_path.status == 403


async def test_key_limited_to_get_cannot_put(make_api):
    api = await make_api(auth={"api_keys": [{"key": "reader", "paths": ["/rest/avatar/.*"], "methods": ["GET"]}]})
    api.link.reply = errors.HttpError(404, "no avatar here")  # what the XMPP side says, once the key let it by
    got = await api.get("/rest/avatar/bob@example.com", headers={"Api-Key": "reader"})
    assert got.status == 404 and "no avatar here" in await got.text()
    asked = len(api.link.requests)
    put = await api.put("/rest/avatar/bob@example.com", data=b"\x89PNG", headers={
        "Api-Key": "reader", "Authorization": basic(ADMIN), "Content-Type": "image/png"})
    assert put.status == 403
    assert "not authorized to use PUT on /rest/avatar/bob@example.com (only GET)" in await put.text()
    assert len(api.link.requests) == asked and api.link.sent == [] and api.pool.logins == []


async def raw_get(api, target: str, headers: str) -> tuple[bytes, bytes]:
    """One request written as given (aiohttp's client cannot send an absolute-form target)."""
    reader, writer = await asyncio.open_connection(api.client.server.host, api.client.server.port)
    writer.write(f"GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def test_an_absolute_form_target_gives_both_the_host_for_the_key_and_the_path(make_api):
    api = await make_api(auth={"api_keys": [{"key": "host-only", "domains": ["api.example.com"]}]})
    status, body = await raw_get(api, "http://api.example.com/rest/health",
                                 "Host: evil.example.com\r\nApi-Key: host-only\r\n")
    assert status.split()[1] == b"200" and b"xmpp_link" in body  # routed by the target's path too
    status, body = await raw_get(api, "http://evil.example.com/rest/health",
                                 "Host: api.example.com\r\nApi-Key: host-only\r\n")
    assert status.split()[1] == b"403" and b"not authorized to access /rest/health" in body


async def test_open_access_needs_no_key_but_still_a_login(make_api):
    api = await make_api(auth={"open_access": True})
    response = await api.post("/rest/stream/", data=MESSAGE, headers={"Content-Type": "application/xml"})
    assert response.status == 401
    response = await api.post("/rest/stream/", data=MESSAGE,
                              headers={"Authorization": basic(ADMIN), "Content-Type": "application/xml"})
    assert response.status == 200


# --- login and role ---------------------------------------------------------------------------


async def test_missing_basic_auth_is_401_with_a_challenge(api):
    response = await api.post("/rest/stream/", data=MESSAGE,
                              headers={"Api-Key": API_KEY, "Content-Type": "application/xml"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="TigasePlain"')
    assert "Basic auth" in xml_error(await response.text())["reason"]
    assert api.link.sent == []


async def test_wrong_password_is_401_with_a_challenge(api):
    response = await api.post("/rest/stream/", data=MESSAGE,
                              headers=admin_headers(Authorization=basic((ADMIN[0], "nope"))))
    assert response.status == 401
    assert "WWW-Authenticate" in response.headers
    assert xml_error(await response.text())["reason"] == "Invalid credentials for admin@example.com"


async def test_malformed_basic_auth_is_401_not_500(api):
    for value in ("Basic \u00e9t\u00e9", "Basic !!", "Digest x", "Basic " + "YWRtaW4="):
        response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers(Authorization=value))
        assert response.status == 401, value
        assert "WWW-Authenticate" in response.headers


async def test_user_name_that_is_not_a_bare_jid_is_401(api):
    response = await api.post("/rest/stream/", data=MESSAGE,
                              headers=admin_headers(Authorization=basic(("admin@example.com/res", "adminpass"))))
    assert response.status == 401
    assert api.pool.logins == []


async def test_rate_limited_login_is_429_with_retry_after(api):
    response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers(Authorization=basic(LOCKED)))
    assert response.status == 429
    assert response.headers["Retry-After"] == "42"


async def test_non_admin_is_403(api):
    response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers(Authorization=basic(ALICE)))
    assert response.status == 403
    assert xml_error(await response.text())["reason"] == \
        "alice@example.com is not an admin: this resource needs the admin role"
    assert api.link.sent == []


# --- body size --------------------------------------------------------------------------------


def stanza_of_size(size: int) -> bytes:
    head = b"<message xmlns='jabber:client' to='bob@example.com'><body>"
    tail = b"</body></message>"
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_body_at_the_limit_is_accepted(api):
    response = await api.post("/rest/stream/", data=stanza_of_size(MAX_BODY), headers=admin_headers())
    assert response.status == 200
    assert len(api.link.sent[0].findtext("{jabber:client}body")) > MAX_BODY - 100


async def test_body_over_the_limit_with_content_length_is_413(api):
    response = await api.post("/rest/stream/", data=stanza_of_size(MAX_BODY + 1), headers=admin_headers())
    assert response.status == 413
    assert str(MAX_BODY) in xml_error(await response.text())["reason"]
    assert api.link.sent == []


async def test_chunked_body_over_the_limit_is_413(api):
    async def chunks():
        body = stanza_of_size(MAX_BODY * 2)
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    response = await api.post("/rest/stream/", data=chunks(), headers=admin_headers())
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert response.status == 413
    assert str(MAX_BODY) in xml_error(await response.text())["reason"]
    assert api.link.sent == []


async def test_expect_100_continue_is_answered_and_the_body_read(api):
    # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits a second without the 100.
    response = await api.post("/rest/stream/", data=stanza_of_size(4000), headers=admin_headers(), expect100=True)
    assert response.status == 200
    assert len(api.link.sent) == 1


async def test_unknown_expectation_is_417_and_sends_nothing(api):
    response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers(Expect="teapot"))
    assert response.status == 417
    assert "teapot" in xml_error(await response.text())["reason"]
    assert api.link.sent == []


async def test_chunked_body_under_the_limit_is_accepted(api):
    async def chunks():
        yield MESSAGE[:20]
        yield MESSAGE[20:]

    response = await api.post("/rest/stream/", data=chunks(), headers=admin_headers())
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com"


@pytest.mark.parametrize("path, content_type", [("/rest/stream/", "application/xml"),
                                                 ("/rest/adhoc/example.com", "application/json")])
async def test_a_stalled_body_is_408_and_sends_nothing(make_api, path, content_type):
    api = await make_api(http={"body_timeout": 0.3})

    async def stalled():
        yield b"<message to='bob@example.com'><body>"
        await asyncio.sleep(5)  # never finishes within the timeout
        yield b"late</body></message>"

    response = await api.post(path, data=stalled(), headers=admin_headers(**{"Content-Type": content_type}))
    assert response.status == 408
    assert "did not arrive within 0.3 s" in await response.text()
    assert api.link.sent == []


# --- negotiated error format ------------------------------------------------------------------


async def test_errors_in_json_when_the_content_type_is_json(api):
    response = await api.post("/rest/stream/", headers=admin_headers(**{"Content-Type": "application/json"}))
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(await response.text())
    assert body["error"]["status"] == 400
    assert body["error"]["reason"].startswith("No data received")


async def test_errors_in_json_with_the_type_parameter(api):
    response = await api.get("/rest/nothing?type=application/json")
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(await response.text()) == {"error": {"status": 404, "reason": "No handler for /rest/nothing"}}


async def test_errors_in_json_with_accept(api):
    response = await api.post("/rest/stream/", data=MESSAGE, headers={"Accept": "application/json"})
    assert response.status == 403
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(await response.text())["error"]["reason"].startswith("Missing required 'Api-Key'")


async def test_content_type_beats_type_and_accept(api):
    response = await api.post("/rest/stream/?type=application/json", data=b"",
                              headers=admin_headers(Accept="application/json"))
    assert response.status == 400
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert xml_error(await response.text())["status"] == "400"


async def test_accept_quality_values_are_honoured(api):
    response = await api.get("/rest/nothing", headers={"Accept": "application/json;q=0.5, application/xml"})
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    response = await api.get("/rest/nothing", headers={"Accept": "application/xml;q=0.5, application/json"})
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_error_text_is_utf8(api):
    response = await api.get("/rest/n\u00e4\u00efve?type=application/json")
    assert response.status == 404
    raw = await response.read()
    assert "/rest/n\u00e4\u00efve".encode("utf-8") in raw


# --- another context path ---------------------------------------------------------------------


async def test_custom_context_path(make_api):
    api = await make_api(http={"context_path": "/api/v1"})
    assert (await api.get("/api/v1/")).status == 200
    response = await api.post("/api/v1/stream/bob@example.com", data=MESSAGE, headers=admin_headers())
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com"
    response = await api.post("/rest/stream/", data=MESSAGE, headers=admin_headers())
    assert response.status == 404
    assert xml_error(await response.text())["reason"] == "Not found: the REST API is under /api/v1/"


async def test_root_context_path(make_api):
    api = await make_api(http={"context_path": "/"})
    response = await api.get("/")
    assert response.status == 200 and "/stream" in await response.text()
    response = await api.post("/stream/bob@example.com", data=MESSAGE, headers=admin_headers())
    assert response.status == 200
    assert api.link.sent[0].get("to") == "bob@example.com"


async def test_index_answers_get_and_head_only(api):
    for path in ("/rest/", "/rest"):
        response = await api.post(path, data=MESSAGE, headers=admin_headers())
        assert response.status == 404
        assert xml_error(await response.text())["reason"] == f"POST is not supported on {path} (supported: GET, HEAD)"
        head = await api.head(path)
        assert head.status == 200 and head.headers["Content-Type"] == "text/html; charset=utf-8"
        assert await head.read() == b""
