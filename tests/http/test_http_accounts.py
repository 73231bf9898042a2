"""/rest/user/{jid}, /rest/users/, /rest/stats/, /rest/vhost/ over HTTP with the component link faked:
an API key alone acts as the component (the IQs go over the link)."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring

from fakes import ALICE, API_KEY, basic

C = "http://jabber.org/protocol/commands"
KEY = {"Api-Key": API_KEY, "Content-Type": "application/json"}


def answer(body, type_="result"):
    return fromstring(f'<iq xmlns="jabber:client" type="{type_}" from="example.com">{body}</iq>')


def note(kind, text):
    return answer(f'<command xmlns="{C}" status="completed"><note type="{kind}">{text}</note></command>')


def node_of(iq):
    return iq.find(f"{{{C}}}command").get("node").rsplit("#", 1)[1]


async def test_create_sends_add_user_over_the_link(api):
    api.link.reply = answer(f'<command xmlns="{C}" status="completed"/>')
    r = await api.put("/rest/user/New@Example.com", json={"user": {"password": "pw"}}, headers=KEY)
    assert r.status == 200
    assert await r.json() == {"user": {"jid": "new@example.com", "domain": "example.com"}}
    (iq, _), = api.link.requests
    assert iq.get("to") == "example.com" and node_of(iq) == "add-user"
    fields = {f.get("var"): [v.text for v in f] for f in iq.iter("{jabber:x:data}field")}
    assert fields["accountjid"] == ["new@example.com"] and fields["password"] == fields["password-verify"] == ["pw"]


async def test_existing_account_is_409_user_exists(api):
    api.link.reply = note("error", "Account already exists")
    r = await api.put("/rest/user/a@example.com", json={"user": {"password": "pw"}}, headers=KEY)
    assert r.status == 409 and (await r.json())["error"]["reason"] == "User exists"


async def test_missing_account_is_404(api):
    api.link.reply = note("error", "User does not exist")
    for method in ("GET", "POST", "DELETE"):
        r = await api.request(method, "/rest/user/nobody@example.com", json={"user": {"password": "x"}}, headers=KEY)
        assert r.status == 404, method


async def test_other_failures_are_422_with_the_note(api):
    api.link.reply = note("error", "Passwords do not match")
    r = await api.put("/rest/user/a@example.com", json={"user": {"password": "pw"}}, headers=KEY)
    assert r.status == 422 and (await r.json())["error"]["text"] == "Passwords do not match"


async def test_role_and_key(api):
    assert (await api.get("/rest/user/a@example.com")).status == 403  # neither key nor login
    r = await api.get("/rest/user/a@example.com", headers={"Authorization": basic(ALICE)})
    assert r.status == 403  # a login without the admin role
    assert not api.link.requests


async def test_users_list_501_when_the_server_has_no_list(api):
    api.link.reply = answer('<error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
                            '</error>', "error")
    r = await api.get("/rest/users/", headers=KEY)
    assert r.status == 501 and "get-registered-users-list" in (await r.json())["error"]["reason"]


async def test_users_list(api):
    api.link.reply = answer(f'<command xmlns="{C}" status="completed"><x xmlns="jabber:x:data" type="form">'
                            '<field var="registereduserjids"><value>b@example.com</value><value>a@example.com</value>'
                            '</field></x></command>')
    r = await api.get("/rest/users/example.com", headers=KEY)
    assert await r.json() == {"users": {"items": ["a@example.com", "b@example.com"], "count": 2,
                                        "domain": "example.com"}}
    assert (await api.get("/rest/users/a@example.com", headers=KEY)).status == 400


async def test_vhost_is_501_with_the_reason(api):
    r = await api.get("/rest/vhost/", headers=KEY)
    assert r.status == 501 and "virtual hosts" in (await r.json())["error"]["reason"]


async def test_own_stats(api):
    r = await api.get("/rest/stats/http", headers=KEY)
    assert await r.json() == {"stats": {"component": "http", "node": "stats/http", "jid": "http.example.com",
                                        "data": [{"var": "http/xmpp_link", "value": "up"}]}}
    assert (await api.get("/rest/stats/nope", headers=KEY)).status == 404


async def test_index_lists_the_new_endpoints(api):
    html = await (await api.get("/rest/")).text()
    for path in ("/user/{user-jid}", "/users/[{domain}]", "/stats/[{component}]", "/vhost/"):
        assert path in html, path
