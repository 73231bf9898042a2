"""What a handler's answer becomes over HTTP (Tigase's callback result types), request bodies as
handlers receive them, and failures inside handlers. Uses its own scripts folder."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest

from fakes import ADMIN, ALICE, API_KEY, basic
from tigase_rest.http import server

MAX_BODY = 64 * 1024  # room for bodies nested deeper than Python's recursion limit

SCRIPT = '''
import asyncio

from aiohttp import web

from tigase_rest.errors import HttpError
from tigase_rest.handlers import Handler, Result


class Results(Handler):
    regex = r"/result/(\\w+)"
    api_key = False

    def exec_get(self, service, callback, kind):
        if kind == "none":
            callback(None)
        elif kind == "str":
            callback("h\\u00e9llo")
        elif kind == "bytes":
            callback(b"\\x00\\x01\\xff")
        elif kind == "result":
            callback(Result(b"\\x89PNG\\r\\n", "image/png", headers=(("Cache-Control", "max-age=60"),)))
        elif kind == "dict":
            callback({"user": {"jid": "alice@example.com", "isAdmin": False, "uid": None,
                               "groups": ["a", "b"], "name": "\\u00c5sa <&>"}})
        elif kind == "list":
            callback([{"jid": "a@example.com"}, {"jid": "b@example.com"}])
        elif kind == "callable":
            callback(lambda request: web.Response(status=201, text="made " + request.path,
                                                  headers={"Location": "/rest/t/result/str"}))
        elif kind == "returned":
            return {"returned": "yes"}
        elif kind == "conflict":
            raise HttpError(409, "User exists")
        elif kind == "crash":
            raise ValueError("kaput")
        elif kind == "callback_wins":
            callback("from callback")
            return "from return"
        elif kind == "later":
            async def answer():
                await asyncio.sleep(0.01)
                callback({"later": "yes"})
            self.task = asyncio.get_running_loop().create_task(answer())
        elif kind == "never":
            pass
        else:
            return 42


class Echo(Handler):
    regex = r"/echo(?:/(\\w+))?"
    api_key = False

    def exec_post(self, service, callback, content, tail):
        return {"echo": {"content": content, "tail": tail}}


class Raw(Handler):
    regex = "/raw"
    api_key = False
    decode_content = False

    async def exec_put(self, service, callback, content):
        return Result(await content.read() if content is not None else b"(none)", "application/octet-stream")


class Sync(Handler):
    regex = "/sync"
    api_key = False
    is_async = False

    def exec_get(self, service, callback):
        pass


class WhoAmI(Handler):
    regex = "/whoami"
    required_role = "user"
    api_key_replaces_login = True

    def exec_get(self, service, callback, user):
        return {"whoami": {"user": user, "admin": service.is_admin(user)}}


class Admin(Handler):
    regex = "/admin"
    required_role = "admin"
    api_key = False

    def exec_get(self, service, callback, user):
        return {"admin": user}
'''


@pytest.fixture
async def t(make_api, tmp_path):
    folder = tmp_path / "rest" / "t"
    folder.mkdir(parents=True)
    (folder / "handlers.py").write_text(SCRIPT, encoding="utf-8")
    (folder / "broken.py").write_text("def broken(:\n", encoding="utf-8")
    return await make_api(tmp_path / "rest", http={"max_body_bytes": MAX_BODY})


# --- result types -------------------------------------------------------------------------------


async def test_none_is_404_with_a_reason(t):
    response = await t.get("/rest/t/result/none")
    assert response.status == 404
    assert ET.fromstring(await response.text()).findtext("reason") == "Nothing found at /rest/t/result/none"


async def test_str_is_utf8_text(t):
    response = await t.get("/rest/t/result/str")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await response.read() == "h\u00e9llo".encode("utf-8")


async def test_bytes_are_written_raw(t):
    response = await t.get("/rest/t/result/bytes")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert await response.read() == b"\x00\x01\xff"


async def test_result_sets_its_content_type_and_headers(t):
    response = await t.get("/rest/t/result/result")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "max-age=60"
    assert await response.read() == b"\x89PNG\r\n"


async def test_dict_is_xml_by_default(t):
    response = await t.get("/rest/t/result/dict")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert await response.text() == (
        "<user><jid>alice@example.com</jid><isAdmin>false</isAdmin><uid/>"
        "<groups><item>a</item><item>b</item></groups><name>\u00c5sa &lt;&amp;&gt;</name></user>")


@pytest.mark.parametrize("how", [{"params": {"type": "application/json"}},
                                 {"headers": {"Accept": "application/json"}},
                                 {"headers": {"Content-Type": "application/json"}}])
async def test_dict_is_json_when_asked(t, how):
    response = await t.get("/rest/t/result/dict", **how)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(await response.text()) == {"user": {"jid": "alice@example.com", "isAdmin": False, "uid": None,
                                                          "groups": ["a", "b"], "name": "\u00c5sa <&>"}}


async def test_list_is_item_elements_in_result(t):
    response = await t.get("/rest/t/result/list")
    assert await response.text() == \
        "<result><item><jid>a@example.com</jid></item><item><jid>b@example.com</jid></item></result>"


async def test_callable_builds_its_own_response(t):
    response = await t.get("/rest/t/result/callable", allow_redirects=False)
    assert response.status == 201
    assert response.headers["Location"] == "/rest/t/result/str"
    assert await response.text() == "made /rest/t/result/callable"


async def test_returned_value_is_the_answer(t):
    response = await t.get("/rest/t/result/returned", params={"type": "application/json"})
    assert json.loads(await response.text()) == {"returned": "yes"}


async def test_callback_wins_over_the_returned_value(t):
    assert await (await t.get("/rest/t/result/callback_wins")).text() == "from callback"


async def test_an_unsupported_result_type_is_500(t):
    response = await t.get("/rest/t/result/other")
    assert response.status == 500
    assert "int" in ET.fromstring(await response.text()).findtext("reason")


async def test_async_handler_calling_back_later_from_a_task(t):
    response = await t.get("/rest/t/result/later", params={"type": "application/json"})
    assert response.status == 200
    assert json.loads(await response.text()) == {"later": "yes"}


async def test_handler_that_never_calls_back_is_504(make_api, tmp_path, monkeypatch):
    monkeypatch.setattr(server, "CALLBACK_GRACE", 0.0)
    folder = tmp_path / "rest" / "t"
    folder.mkdir(parents=True)
    (folder / "handlers.py").write_text(SCRIPT, encoding="utf-8")
    api = await make_api(tmp_path / "rest", xmpp={"iq_timeout": 0.05})
    response = await api.get("/rest/t/result/never")
    assert response.status == 504
    assert "did not answer" in ET.fromstring(await response.text()).findtext("reason")


async def test_sync_handler_returning_without_answer_is_500(t):
    response = await t.get("/rest/t/sync")
    assert response.status == 500
    assert "returned without calling back" in ET.fromstring(await response.text()).findtext("reason")


# --- failures in handlers -----------------------------------------------------------------------


async def test_http_error_from_a_handler_keeps_its_status(t):
    response = await t.get("/rest/t/result/conflict", params={"type": "application/json"})
    assert response.status == 409
    assert json.loads(await response.text()) == {"error": {"status": 409, "reason": "User exists"}}


async def test_exception_in_handler_is_500_and_the_server_keeps_answering(t):
    response = await t.get("/rest/t/result/crash")
    assert response.status == 500
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    reason = ET.fromstring(await response.text()).findtext("reason")
    assert reason == "Internal error in the handler: ValueError"
    assert "kaput" not in reason  # no internals leak to the client
    response = await t.get("/rest/t/result/str")
    assert response.status == 200


async def test_a_broken_script_does_not_stop_the_others_and_shows_on_the_index(t):
    assert (await t.get("/rest/t/result/str")).status == 200
    html = await (await t.get("/rest/")).text()
    assert "broken.py" in html and "failed to load" in html


# --- request bodies as handlers get them ------------------------------------------------------


async def test_json_body_is_decoded(t):
    response = await t.post("/rest/t/echo/x", json={"command": {"node": "n", "fields": [{"var": "a", "value": 1}]}})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(await response.text()) == \
        {"echo": {"content": {"command": {"node": "n", "fields": [{"var": "a", "value": 1}]}}, "tail": "x"}}


async def test_xml_body_is_decoded_with_tigase_rules_and_answered_in_xml(t):
    body = "<command><node>n</node><fields><item><var>accountjids</var><value><item>a@b</item></value>" \
           "</item></fields></command>"
    response = await t.post("/rest/t/echo", data=body, headers={"Content-Type": "application/xml"})
    assert response.status == 200
    assert await response.text() == (
        "<echo><content><command><node>n</node><fields><item><var>accountjids</var><value><item>a@b</item>"
        "</value></item></fields></command></content><tail/></echo>")


async def test_form_encoded_json_body_is_sniffed(t):
    # curl -d sends application/x-www-form-urlencoded
    response = await t.post("/rest/t/echo?type=application/json", data=b'{"a": "b"}',
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200
    assert json.loads(await response.text())["echo"]["content"] == {"a": "b"}


async def test_post_without_body_gets_none_and_the_groups_stay_in_place(t):
    response = await t.post("/rest/t/echo/tail", params={"type": "application/json"})
    assert response.status == 200
    assert json.loads(await response.text()) == {"echo": {"content": None, "tail": "tail"}}


async def test_undecodable_body_is_415(t):
    response = await t.post("/rest/t/echo", data=b"a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 415


@pytest.mark.parametrize("body, content_type", [
    (b'{"a": ', "application/json"),
    (b"\xff\xfe{}", "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json"),
    (b"<a><b></a>", "application/xml"),
    (b"<a>" * 5000 + b"</a>" * 5000, "application/xml"),
    (b"<!DOCTYPE a [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><a>&x;</a>", "application/xml"),
])
async def test_malformed_bodies_are_400(t, body, content_type):
    response = await t.post("/rest/t/echo", data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    assert "root:" not in await response.text()


async def test_decoded_body_over_the_limit_is_413_even_chunked(t):
    async def chunks():
        for _ in range(MAX_BODY // 100 + 2):
            yield b'"' + b"x" * 98 + b'"'

    response = await t.post("/rest/t/echo", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_raw_request_is_passed_when_decode_content_is_false(t):
    response = await t.put("/rest/t/raw", data=b"<not-parsed")
    assert (response.status, await response.read()) == (200, b"<not-parsed")
    response = await t.put("/rest/t/raw")
    assert await response.read() == b"(none)"


# --- roles and keys on a handler that accepts a key instead of a login ----------------------


async def test_api_key_alone_replaces_the_login(t):
    response = await t.get("/rest/t/whoami", headers={"Api-Key": API_KEY}, params={"type": "application/json"})
    assert response.status == 200
    assert json.loads(await response.text()) == {"whoami": {"user": None, "admin": False}}
    assert t.pool.logins == []


async def test_the_key_is_checked_before_the_login(t):
    response = await t.get("/rest/t/whoami")
    assert response.status == 403  # the key is checked first
    response = await t.get("/rest/t/whoami", headers={"Api-Key": API_KEY, "Authorization": "Basic !!"})
    assert response.status == 200  # a valid key: the login is not even looked at


async def test_role_without_api_key(t):
    response = await t.get("/rest/t/admin", headers={"Authorization": basic(ADMIN)}, params={"type": "json"})
    assert json.loads(await response.text()) == {"admin": "admin@example.com"}
    response = await t.get("/rest/t/admin", headers={"Authorization": basic(ALICE)})
    assert response.status == 403
    response = await t.get("/rest/t/admin")
    assert response.status == 401


async def test_concurrent_requests_are_answered_independently(t):
    responses = await asyncio.gather(*(t.get("/rest/t/result/later", params={"type": "json"}) for _ in range(20)),
                                     t.get("/rest/t/result/crash"))
    assert [r.status for r in responses] == [200] * 20 + [500]
