"""/rest/user/{jid}, /rest/users/, /rest/stats/, /rest/vhost/ against a real server (issue 14).

Portable: each test holds on Prosody and ejabberd; what differs (the registered-users list) is read
from the server object. Both identities are exercised: an API key alone (the component, a server
admin) and an admin login without a key (the caller's own session)."""

from __future__ import annotations

import uuid

import pytest

from rest import ADMIN, ALICE, basic, call

NO_KEY = {"Api-Key": None}
JSON = {"Content-Type": "application/json"}


def new_jid(prefix="acct"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}@localhost"


async def can_log_in(component, jid, password):
    """A Basic-auth login is a real SASL login on the server: 200 for an account with that password."""
    answer = await call(component, "GET", "/rest/adhoc/localhost", auth=basic(jid, password))
    return answer.status == 200


@pytest.mark.portable
@pytest.mark.parametrize("identity", ["api-key", "admin-login"])
async def test_account_lifecycle(component, identity):
    auth, headers = ({}, JSON) if identity == "api-key" else (ADMIN, {**NO_KEY, **JSON})
    jid = new_jid()

    async def user(method, body=None):
        return await call(component, method, f"/rest/user/{jid}", auth=auth, headers=headers, body=body)

    assert (await user("GET")).status == 404
    created = await user("PUT", {"user": {"password": "first", "email": "someone@example.org"}})
    assert created.status == 200, created.text
    assert created.json()["user"]["jid"] == jid and created.json()["user"]["domain"] == "localhost"
    assert await can_log_in(component, jid, "first")

    again = await user("PUT", {"user": {"password": "other"}})
    assert again.status == 409 and again.json()["error"]["reason"] == "User exists"

    got = await user("GET")
    assert got.status == 200, got.text
    user_data = got.json()["user"]  # the login above left a pooled session: online with one resource
    assert {k: user_data[k] for k in ("jid", "domain", "roster_size")} == {"jid": jid, "domain": "localhost",
                                                                           "roster_size": 0}
    assert user_data["online"] == bool(user_data["resources"])

    changed = await user("POST", {"user": {"password": "second"}})
    assert changed.status == 200 and changed.json()["user"]["jid"] == jid
    assert await can_log_in(component, jid, "second")

    deleted = await user("DELETE")
    assert deleted.status == 200 and deleted.json() == {"user": {"jid": jid, "domain": "localhost"}}
    for method in ("GET", "DELETE"):
        assert (await user(method)).status == 404
    missing = await user("POST", {"user": {"password": "third"}})
    assert missing.status == 404, missing.text


@pytest.mark.portable
async def test_user_endpoints_xml_and_bad_input(component):
    jid = new_jid()
    answer = await call(component, "PUT", f"/rest/user/{jid}", auth={}, headers={"Content-Type": "application/xml"},
                        body="<user><password>pw</password></user>")
    assert answer.status == 200 and f"<jid>{jid}</jid>" in answer.text
    for body in ({"user": {}}, {"user": "x"}, {"user": {"password": ["a"]}}):
        bad = await call(component, "PUT", f"/rest/user/{new_jid()}", auth={}, body=body)
        assert bad.status == 400, bad.text
    assert (await call(component, "GET", "/rest/user/localhost", auth={})).status == 400  # no localpart
    assert (await call(component, "DELETE", f"/rest/user/{jid}", auth={})).status == 200


@pytest.mark.portable
async def test_access_key_or_admin_login(component):
    path = "/rest/user/alice@localhost"
    assert (await call(component, "GET", path, auth={})).status == 200  # key alone
    assert (await call(component, "GET", path, headers=NO_KEY)).status == 200  # admin login alone
    refused = await call(component, "GET", path, auth=ALICE, headers=NO_KEY)
    assert refused.status == 403  # a login that is not an admin
    assert (await call(component, "GET", path, auth={}, headers=NO_KEY)).status == 403  # neither
    assert (await call(component, "GET", path, headers={"Api-Key": "wrong"})).status == 403  # a wrong key stays wrong
    # /status is still status.py's, and takes an admin login without a key too (Tigase 2.x)
    status = await call(component, "POST", "/rest/user/alice@localhost/status", headers=NO_KEY,
                        body={"available": "false"})
    assert status.status == 200 and status.json()["status"]["user"] == "alice@localhost/tigase-external"


@pytest.mark.portable
async def test_users_list(component, xmpp_server):
    for path in ("/rest/users/", "/rest/users/localhost", "/rest/users"):
        for auth, headers in (({}, None), (ADMIN, NO_KEY)):
            answer = await call(component, "GET", path, auth=auth, headers={**(headers or {}), **JSON})
            if xmpp_server.registered_users_list:
                assert answer.status == 200, answer.text
                users = answer.json()["users"]
                assert {"admin@localhost", "alice@localhost", "bob@localhost"} <= set(users["items"])
                assert users["count"] == len(users["items"]) and users["domain"] == "localhost"
            else:
                assert answer.status == 501
                assert "get-registered-users-list" in answer.json()["error"]["reason"]
    assert (await call(component, "GET", "/rest/users/localhost", auth=ALICE, headers=NO_KEY)).status == 403


@pytest.mark.portable
async def test_stats(component, xmpp_server, xmpp_client):
    await xmpp_client("bob")
    answer = await call(component, "GET", "/rest/stats/", auth={}, headers=JSON)
    assert answer.status == 200, answer.text
    stats = answer.json()["stats"]
    assert set(stats) == {"sess-man", "http"}
    server = {item["var"]: item["value"] for item in stats["sess-man"]["data"]}
    assert int(server["online-users"]) >= 1
    assert int(server["uptime"]) >= 0
    assert server["version/name"].lower() == xmpp_server.name
    assert ("registered-users" in server) == xmpp_server.registered_users_list
    if not xmpp_server.registered_users_list:
        assert "http://jabber.org/protocol/admin#get-registered-users-num" in server["unavailable"]
    own = {item["var"]: item["value"] for item in stats["http"]["data"]}
    assert own["http/xmpp_link"] == "up"

    one = await call(component, "GET", "/rest/stats/http", headers={**NO_KEY, **JSON})
    assert one.status == 200 and one.json()["stats"]["component"] == "http"
    one = await call(component, "GET", "/rest/stats/sess-man", headers={**NO_KEY, **JSON})  # as the admin's own session
    assert one.status == 200 and one.json()["stats"]["component"] == "sess-man"
    assert (await call(component, "GET", "/rest/stats/nope")).status == 404


@pytest.mark.portable
async def test_vhost_not_told_by_the_server(component):
    answer = await call(component, "GET", "/rest/vhost/", auth={}, headers=JSON)
    assert answer.status == 501
    assert "virtual hosts" in answer.json()["error"]["reason"]


@pytest.mark.portable
async def test_adhoc_fidelity(component, xmpp_server):
    # A trailing slash, as /rest/stream/ takes one.
    listed = await call(component, "GET", "/rest/adhoc/localhost/", headers=JSON)
    assert listed.status == 200 and listed.json()["items"]
    # The command named as an attribute in XML.
    node = xmpp_server.user_commands[0]
    ran = await call(component, "POST", "/rest/adhoc/localhost", headers={"Content-Type": "application/xml"},
                     body=f'<command node="{node}"/>')
    assert ran.status == 200 and "<status>completed</status>" in ran.text, ran.text
    # A failure reported in a <note type="error"> (Prosody) is 422 with the note; ejabberd says conflict.
    failed = await call(component, "POST", "/rest/adhoc/localhost", body={"command": {
        "node": "http://jabber.org/protocol/admin#add-user",
        "fields": [{"var": "accountjid", "value": "alice@localhost"}, {"var": "password", "value": "x"},
                   {"var": "password-verify", "value": "x"}]}})
    error = failed.json()["error"]
    if xmpp_server.add_user_note:
        assert (failed.status, error["text"]) == (422, "Account already exists")
    else:
        assert (failed.status, error["condition"]) == (409, "conflict")
