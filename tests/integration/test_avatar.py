"""/rest/avatar against a real Prosody: avatars that real clients publish (vcard-temp, XEP-0084 PEP,
vCard4), read back through the API as exact bytes; caching; missing avatars; PUT round trips.

The test Prosody grants the component the XEP-0356 IQ privileges for vcard-temp and pubsub (not
vcard-4.0), so PEP and vcard-temp are read as the user, vCard4 as the component.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import uuid
import zlib

import aiohttp
import pytest
from slixmpp.xmlstream import ET

from rest import ADMIN, ALICE, KEY

PUBSUB = "http://jabber.org/protocol/pubsub"


def png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 1x1 PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8 bits, truecolour
    pixels = zlib.compress(b"\x00" + bytes(rgb))  # filter byte, then one RGB pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


RED, GREEN, BLUE = png((255, 0, 0)), png((0, 255, 0)), png((0, 0, 255))


class Answer:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def reason(self) -> str:
        return self.json()["error"]["reason"]


async def fetch(component, method: str, path: str, *, body: bytes | None = None, headers=None, auth=None) -> Answer:
    """Raw bytes, redirects not followed, errors in JSON (rest.call decodes the body as text)."""
    merged = {**KEY, "Accept": "application/json", **(auth or {}), **(headers or {})}
    merged = {k: v for k, v in merged.items() if v is not None}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, component.url + path, data=body, headers=merged,
                                allow_redirects=False) as response:
            return Answer(response.status, response.headers, await response.read())


async def iq(client, kind: str, payload: str):
    stanza = client.xmpp.make_iq(itype=kind)
    stanza.append(ET.fromstring(payload))
    return await stanza.send(timeout=5)


def vcard_temp(photo: bytes | None = None, *, fields: str = "", photo_xml: str | None = None) -> str:
    if photo is not None:
        photo_xml = f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.encodebytes(photo).decode()}</BINVAL></PHOTO>"
    return f"<vCard xmlns='vcard-temp'>{fields}{photo_xml or ''}</vCard>"


def publish(node: str, item_id: str, payload: str, *, access_model: str | None = None) -> str:
    options = ""
    if access_model:
        options = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
                   "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options"
                   f"</value></field><field var='pubsub#access_model'><value>{access_model}</value></field>"
                   "</x></publish-options>")
    return (f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{item_id}'>{payload}</item></publish>"
            f"{options}</pubsub>")


def metadata(info: str) -> str:
    return f"<metadata xmlns='urn:xmpp:avatar:metadata'>{info}</metadata>"


@pytest.fixture
def new_user(prosody, xmpp_client):
    """``await new_user()``: a fresh account, logged in (tests that change avatars stay independent)."""
    async def create():
        name = "av-" + uuid.uuid4().hex[:10]
        prosody.register(name, "pw-" + name)
        return await xmpp_client(name), f"{name}@{prosody.domain}"
    return create


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# --- GET ----------------------------------------------------------------------------------------


async def test_vcard_temp_photo_is_served_from_vcard_temp_and_pep(component, xmpp_client):
    alice = await xmpp_client("alice")
    await iq(alice, "set", vcard_temp(RED, fields="<FN>Alice</FN>"))

    for path in ("/rest/avatar/alice@localhost", "/rest/avatar/alice@localhost/vcard-temp",
                 "/rest/avatar/alice@localhost/avatar"):  # mod_vcard_legacy publishes it as PEP too
        answer = await fetch(component, "GET", path)
        assert (answer.status, answer.body) == (200, RED), path
        assert answer.headers["Content-Type"] == "image/png"
        assert answer.headers["ETag"] == f'"{sha1(RED)}"'
        assert answer.headers["Cache-Control"].startswith("private, max-age=")
        assert answer.headers["X-Content-Type-Options"] == "nosniff"

    # mod_vcard_legacy keeps the photo out of the vCard4 it derives
    answer = await fetch(component, "GET", "/rest/avatar/alice@localhost/vcard4")
    assert answer.status == 404
    assert "No avatar in vcard4 for alice@localhost: the vCard4 has no <photo><uri>" in answer.reason


async def test_api_key_is_required(component):
    answer = await fetch(component, "GET", "/rest/avatar/alice@localhost", headers={"Api-Key": None})
    assert answer.status == 403
    assert "Api-Key" in answer.reason


async def test_etag_gives_304_without_body(component, new_user):
    client, jid = await new_user()
    await iq(client, "set", vcard_temp(GREEN))
    for path in (f"/rest/avatar/{jid}", f"/rest/avatar/{jid}/vcard-temp"):
        for tag in (f'"{sha1(GREEN)}"', f'W/"{sha1(GREEN)}"', f'"other", "{sha1(GREEN)}"', "*"):
            answer = await fetch(component, "GET", path, headers={"If-None-Match": tag})
            assert (answer.status, answer.body) == (304, b""), (path, tag)
            assert answer.headers["ETag"] == f'"{sha1(GREEN)}"'
        answer = await fetch(component, "GET", path, headers={"If-None-Match": f'"{sha1(RED)}"'})
        assert (answer.status, answer.body) == (200, GREEN)


async def test_user_without_avatar_is_404_with_what_each_source_said(component):
    answer = await fetch(component, "GET", "/rest/avatar/bob@localhost")
    assert answer.status == 404
    reason = answer.reason
    assert reason.startswith("No avatar for bob@localhost (avatar: ")
    assert "avatar: bob@localhost answered item-not-found for urn:xmpp:avatar:metadata" in reason
    # Prosody hides a PEP node that does not exist from anyone but its owner
    assert "vcard4: bob@localhost answered forbidden for the vCard4; a XEP-0356 IQ privilege" in reason
    assert "vcard-temp: the vCard has no PHOTO" in reason

    for source in ("avatar", "vcard4", "vcard-temp"):
        answer = await fetch(component, "GET", f"/rest/avatar/bob@localhost/{source}")
        assert answer.status == 404
        assert f"No avatar in {source} for bob@localhost" in answer.reason


async def test_unknown_user_is_404(component):
    answer = await fetch(component, "GET", "/rest/avatar/nobody@localhost")
    assert answer.status == 404
    assert "local user" in answer.reason  # Prosody's mod_privilege refuses to act as a non-existent user


async def test_pep_avatar_hidden_from_the_component_is_read_as_the_user(component, new_user):
    """A client publishing XEP-0084 itself gets nodes with access model "presence": only the
    privileged read (as the owner) sees them; Prosody's vcard-temp then shows the component nothing."""
    client, jid = await new_user()
    item_id = sha1(BLUE)
    await iq(client, "set", publish("urn:xmpp:avatar:data", item_id,
                                    f"<data xmlns='urn:xmpp:avatar:data'>{base64.b64encode(BLUE).decode()}</data>"))
    await iq(client, "set", publish("urn:xmpp:avatar:metadata", item_id,
                                    metadata(f"<info id='{item_id}' type='image/png' bytes='{len(BLUE)}'/>")))

    for path in (f"/rest/avatar/{jid}", f"/rest/avatar/{jid}/avatar", f"/rest/avatar/{jid}/vcard-temp"):
        answer = await fetch(component, "GET", path)
        assert (answer.status, answer.body, answer.headers["Content-Type"]) == (200, BLUE, "image/png"), path
        assert answer.headers["ETag"] == f'"{item_id}"'


async def test_pep_metadata_without_its_data_is_a_photo_without_binval(component, new_user):
    """Metadata naming a data item that does not exist: Prosody's vcard-temp then carries a PHOTO
    with TYPE and no BINVAL (Tigase fails with a NullPointerException there)."""
    client, jid = await new_user()
    await iq(client, "set", publish("urn:xmpp:avatar:metadata", "missing",
                                    metadata("<info id='missing' type='image/png' bytes='10'/>")))

    answer = await fetch(component, "GET", f"/rest/avatar/{jid}/vcard-temp")
    assert answer.status == 404
    assert answer.reason.count("the vCard PHOTO has no BINVAL") == 1

    answer = await fetch(component, "GET", f"/rest/avatar/{jid}")
    assert answer.status == 404
    # no data node at all: item-not-found (an empty node answers an empty <items/>, see the unit tests)
    assert f"avatar: {jid} answered item-not-found for urn:xmpp:avatar:data item missing" in answer.reason
    assert "vcard-temp: the vCard PHOTO has no BINVAL" in answer.reason


async def test_disabled_pep_avatar(component, new_user):
    client, jid = await new_user()
    await iq(client, "set", publish("urn:xmpp:avatar:metadata", "off", metadata("")))
    answer = await fetch(component, "GET", f"/rest/avatar/{jid}/avatar")
    assert answer.status == 404
    assert "disabled" in answer.reason


async def test_links_are_redirects(component, new_user):
    client, jid = await new_user()
    await iq(client, "set", publish("urn:xmpp:avatar:metadata", "ext", metadata(
        "<info id='ext' type='image/png' bytes='10' url='https://avatars.example.com/u.png'/>")))
    for path in (f"/rest/avatar/{jid}", f"/rest/avatar/{jid}/avatar",
                 f"/rest/avatar/{jid}/vcard-temp"):  # Prosody turns the url into PHOTO/EXTVAL
        answer = await fetch(component, "GET", path)
        assert (answer.status, answer.headers["Location"]) == (302, "https://avatars.example.com/u.png"), path


async def test_vcard4_photo_data_uri_and_link(component, new_user):
    client, jid = await new_user()
    uri = "data:image/png;base64," + base64.b64encode(GREEN).decode()
    vcard = (f"<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>V</text></fn>"
             f"<photo><uri>{uri}</uri></photo></vcard>")
    # Without the vcard-4.0 privilege the component reads the vCard4 only from a public node
    await iq(client, "set", publish("urn:xmpp:vcard4", "current", vcard, access_model="open"))

    for path in (f"/rest/avatar/{jid}", f"/rest/avatar/{jid}/vcard4"):
        answer = await fetch(component, "GET", path)
        assert (answer.status, answer.body, answer.headers["Content-Type"]) == (200, GREEN, "image/png"), path
        assert answer.headers["ETag"] == f'"{sha1(GREEN)}"'

    vcard = vcard.replace(uri, "https://avatars.example.com/v.jpg")
    await iq(client, "set", publish("urn:xmpp:vcard4", "current", vcard, access_model="open"))
    answer = await fetch(component, "GET", f"/rest/avatar/{jid}/vcard4")
    assert (answer.status, answer.headers["Location"]) == (302, "https://avatars.example.com/v.jpg")


async def test_vcard4_hidden_from_the_component_says_which_privilege_helps(component, new_user):
    client, jid = await new_user()
    await iq(client, "set", "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><photo><uri>https://x.example/a.png"
                            "</uri></photo></vcard>")
    answer = await fetch(component, "GET", f"/rest/avatar/{jid}/vcard4")
    assert answer.status == 404
    assert "answered forbidden for the vCard4; a XEP-0356 IQ privilege for urn:ietf:params:xml:ns:vcard-4.0" \
        in answer.reason


@pytest.mark.parametrize("path, status, reason", [
    ("/rest/avatar/alice@localhost/photo", 404, "Unknown avatar source 'photo': use avatar, vcard4, vcard-temp"),
    ("/rest/avatar/localhost", 400, "must name a user's bare JID"),
    ("/rest/avatar/localhost/avatar", 400, "must name a user's bare JID"),
    ("/rest/avatar/alice@localhost/avatar/more", 404, "No handler"),
])
async def test_bad_paths(component, path, status, reason):
    answer = await fetch(component, "GET", path)
    assert answer.status == status
    assert reason in answer.reason


# --- PUT ----------------------------------------------------------------------------------------


async def test_put_then_get_round_trip_keeps_other_vcard_fields(component, new_user):
    client, jid = await new_user()
    await iq(client, "set", vcard_temp(RED, fields="<FN>Put Test</FN><NICKNAME>pt</NICKNAME>"))

    answer = await fetch(component, "PUT", f"/rest/avatar/{jid}", body=BLUE, headers={"Content-Type": "image/png"})
    assert answer.status == 200, answer.reason
    assert answer.json() == {"user": {"jid": jid, "hash": sha1(BLUE)}}

    for path in (f"/rest/avatar/{jid}", f"/rest/avatar/{jid}/vcard-temp", f"/rest/avatar/{jid}/avatar"):
        answer = await fetch(component, "GET", path)
        assert (answer.status, answer.body, answer.headers["Content-Type"]) == (200, BLUE, "image/png"), path

    # the user's own view: the PHOTO changed, the other fields are still there
    vcard = (await iq(client, "get", "<vCard xmlns='vcard-temp'/>")).xml.find("{vcard-temp}vCard")
    assert vcard.findtext("{vcard-temp}FN") == "Put Test"
    assert vcard.findtext("{vcard-temp}NICKNAME") == "pt"
    assert base64.b64decode(vcard.findtext("{vcard-temp}PHOTO/{vcard-temp}BINVAL")) == BLUE


async def test_put_answers_tigase_shape_in_xml(component, new_user):
    _, jid = await new_user()
    answer = await fetch(component, "PUT", f"/rest/avatar/{jid}", body=GREEN,
                         headers={"Content-Type": "image/png", "Accept": None})
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert ET.fromstring(answer.body).findtext("jid") == jid


@pytest.mark.parametrize("headers, body, status, reason", [
    ({"Content-Type": "text/plain"}, RED, 415, "Content-Type image/*, not 'text/plain'"),
    ({}, RED, 415, "Content-Type image/*"),
    ({"Content-Type": "image/png"}, b"", 400, "the body is empty"),
    ({"Content-Type": "image/png", "Api-Key": None}, RED, 403, "Api-Key"),
    ({"Content-Type": "image/png", "Api-Key": "wrong"}, RED, 403, "not authorized"),
])
async def test_put_refusals(component, headers, body, status, reason):
    answer = await fetch(component, "PUT", "/rest/avatar/alice@localhost", body=body, headers=headers)
    assert answer.status == status
    assert reason in answer.reason


async def test_put_takes_no_source(component):
    answer = await fetch(component, "PUT", "/rest/avatar/alice@localhost/vcard-temp", body=RED,
                         headers={"Content-Type": "image/png"})
    assert answer.status == 404
    assert "PUT takes no source" in answer.reason


async def test_put_under_open_access_needs_an_admin_login(component_factory, new_user):
    component = component_factory(auth={"open_access": True, "api_keys": []})
    _, jid = await new_user()
    png_body = {"body": GREEN, "headers": {"Content-Type": "image/png", "Api-Key": None}}

    answer = await fetch(component, "PUT", f"/rest/avatar/{jid}", **png_body)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    answer = await fetch(component, "PUT", f"/rest/avatar/{jid}", auth=ALICE, **png_body)
    assert answer.status == 403
    assert "not an admin" in answer.reason
    answer = await fetch(component, "PUT", f"/rest/avatar/{jid}", auth=ADMIN, **png_body)
    assert answer.status == 200, answer.reason

    # reading stays open
    answer = await fetch(component, "GET", f"/rest/avatar/{jid}", headers={"Api-Key": None})
    assert (answer.status, answer.body) == (200, GREEN)


async def test_put_for_an_unknown_user_is_refused_with_the_servers_reason(component):
    answer = await fetch(component, "PUT", "/rest/avatar/nobody@localhost", body=RED,
                         headers={"Content-Type": "image/png"})
    assert answer.status == 403
    assert "local user" in answer.reason
