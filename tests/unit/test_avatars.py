"""Avatar parsing: PEP metadata/data, vCard4 photo URIs, vcard-temp PHOTO, base64, ETags."""

from __future__ import annotations

import base64
import hashlib
from xml.etree.ElementTree import fromstring, tostring

import pytest

from tigase_rest.features.avatar import stanzas as avatars
from tigase_rest.features.avatar.stanzas import Image, Link, NoAvatar

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
PNG_B64 = base64.b64encode(PNG).decode()


def reply(payload: str) -> object:
    return fromstring(f"<iq xmlns='jabber:client' type='result'>{payload}</iq>")


def vcard_temp(inner: str) -> object:
    return reply(f"<vCard xmlns='vcard-temp'>{inner}</vCard>")


# --- base64 and media types ------------------------------------------------------------------


def test_base64_with_wrapped_lines_and_missing_padding():
    wrapped = "\n".join(PNG_B64[i:i + 8] for i in range(0, len(PNG_B64), 8))
    assert avatars.decode_base64(f"\n  {wrapped}\r\n", "BINVAL") == PNG
    assert avatars.decode_base64(PNG_B64.rstrip("="), "BINVAL") == PNG


@pytest.mark.parametrize("text, reason", [
    (None, "BINVAL is empty"),
    ("  \n ", "BINVAL is empty"),
    ("not*base64!", "BINVAL is not valid base64"),
    ("=", "BINVAL is not valid base64"),
    ("Q", "BINVAL is not valid base64"),
])
def test_bad_base64_is_no_avatar_with_a_reason(text, reason):
    with pytest.raises(NoAvatar, match=reason):
        avatars.decode_base64(text, "BINVAL")


@pytest.mark.parametrize("declared, expected", [
    ("image/png", "image/png"),
    (" Image/PNG ; charset=x", "image/png"),
    ("image/svg+xml", "image/svg+xml"),
    ("", None),
    (None, None),
    ("png", None),
    ("image/png\r\nSet-Cookie: x=1", None),
])
def test_media_type(declared, expected):
    assert avatars.media_type(declared) == expected


@pytest.mark.parametrize("data, expected", [
    (PNG, "image/png"),
    (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
    (b"GIF89a...", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"something else", "application/octet-stream"),
])
def test_missing_type_is_sniffed_from_the_bytes(data, expected):
    assert avatars.content_type_of(None, data) == expected
    assert avatars.content_type_of("not a type", data) == expected


# --- data: URIs and links --------------------------------------------------------------------


def test_data_uri_base64():
    found = avatars.parse_data_uri(f"data:image/png;base64,{PNG_B64}")
    assert found == Image(PNG, "image/png", hashlib.sha1(PNG).hexdigest())


def test_data_uri_percent_encoded_base64_and_plain():
    assert avatars.parse_data_uri(f"data:image/png;base64,{PNG_B64.replace('=', '%3D')}").data == PNG
    found = avatars.parse_data_uri("data:image/svg+xml,%3Csvg%2F%3E")
    assert (found.data, found.content_type) == (b"<svg/>", "image/svg+xml")


def test_data_uri_without_type_is_sniffed():
    assert avatars.parse_data_uri(f"data:;base64,{PNG_B64}").content_type == "image/png"


@pytest.mark.parametrize("uri, reason", [
    ("data:image/png;base64", "not a data: URI"),
    ("data:image/png;base64,", "empty"),
    ("data:image/png,", "empty"),
    ("data:image/png;base64,@@@", "not valid base64"),
])
def test_bad_data_uri(uri, reason):
    with pytest.raises(NoAvatar, match=reason):
        avatars.parse_data_uri(uri)


def test_only_http_links_are_followed():
    assert avatars.link(" https://example.com/a.png ", "x") == Link("https://example.com/a.png")
    for url in ("file:///etc/passwd", "javascript:alert(1)", "/relative.png", "cid:photo"):
        with pytest.raises(NoAvatar, match="not an http"):
            avatars.link(url, "x")


# --- PEP -------------------------------------------------------------------------------------


def test_items_iq_latest_and_by_id():
    latest = avatars.items_iq("alice@example.com", avatars.METADATA_NODE)
    assert latest.get("to") == "alice@example.com" and latest.get("type") == "get"
    items = latest.find(f"{{{avatars.PUBSUB_NS}}}pubsub/{{{avatars.PUBSUB_NS}}}items")
    assert (items.get("node"), items.get("max_items"), len(items)) == (avatars.METADATA_NODE, "1", 0)
    by_id = avatars.items_iq("alice@example.com", avatars.DATA_NODE, item_id="abc")
    item = by_id.find(f".//{{{avatars.PUBSUB_NS}}}item")
    assert item.get("id") == "abc"
    assert by_id.find(f".//{{{avatars.PUBSUB_NS}}}items").get("max_items") is None


def metadata(infos: str) -> object:
    return reply("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'>"
                 f"<item id='x'><metadata xmlns='urn:xmpp:avatar:metadata'>{infos}</metadata></item>"
                 "</items></pubsub>")


def test_metadata_prefers_an_info_whose_bytes_are_in_pep():
    info = avatars.avatar_metadata(metadata(
        "<info id='u' type='image/png' url='https://example.com/a.png'/>"
        "<info id='a' type='image/png' bytes='16'/><info id='b' type='image/jpeg'/>"))
    assert info.get("id") == "a"


def test_metadata_with_only_a_url():
    info = avatars.avatar_metadata(metadata("<info id='u' type='image/png' url='https://example.com/a.png'/>"))
    assert info.get("url") == "https://example.com/a.png"


def test_no_metadata_item():
    empty = reply("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>")
    with pytest.raises(NoAvatar, match="no urn:xmpp:avatar:metadata item"):
        avatars.avatar_metadata(empty)


def test_empty_metadata_means_disabled():
    with pytest.raises(NoAvatar, match="disabled"):
        avatars.avatar_metadata(metadata(""))


def test_metadata_info_without_id_or_url():
    with pytest.raises(NoAvatar, match="no id"):
        avatars.avatar_metadata(metadata("<info type='image/png'/>"))


def data_reply(item: str) -> object:
    return reply(f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'>{item}"
                 "</items></pubsub>")


def test_data_item_keeps_the_metadata_id_as_hash():
    found = avatars.avatar_data(
        data_reply(f"<item id='abc'><data xmlns='urn:xmpp:avatar:data'>\n{PNG_B64}\n</data></item>"),
        "abc", "image/png")
    assert found == Image(PNG, "image/png", "abc")


def test_missing_data_item_is_no_avatar():
    # Prosody answers an empty <items/> for an id it does not hold
    with pytest.raises(NoAvatar, match="names item abc, which urn:xmpp:avatar:data does not hold"):
        avatars.avatar_data(data_reply(""), "abc", "image/png")


# --- vCard4 ----------------------------------------------------------------------------------


def vcard4(inner: str) -> object:
    return reply(f"<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>{inner}</vcard>")


def test_vcard4_photo_data_uri_and_link():
    found = avatars.vcard4_photo(vcard4(f"<fn><text>A</text></fn><photo><uri>data:image/png;base64,{PNG_B64}</uri>"
                                        "</photo>"))
    assert found.data == PNG and found.content_type == "image/png"
    assert avatars.vcard4_photo(vcard4("<photo><uri>https://example.com/a.jpg</uri></photo>")) == \
        Link("https://example.com/a.jpg")


def test_vcard4_first_photo_with_a_uri_wins():
    found = avatars.vcard4_photo(vcard4("<photo/><photo><uri>https://example.com/b.png</uri></photo>"))
    assert found == Link("https://example.com/b.png")


@pytest.mark.parametrize("inner", ["", "<fn><text>A</text></fn>", "<photo><uri> </uri></photo>"])
def test_vcard4_without_photo(inner):
    with pytest.raises(NoAvatar, match="no <photo><uri>"):
        avatars.vcard4_photo(vcard4(inner))


# --- vcard-temp ------------------------------------------------------------------------------


def test_vcard_temp_photo_with_type_and_wrapped_binval():
    wrapped = "\n".join(PNG_B64[i:i + 12] for i in range(0, len(PNG_B64), 12))
    found = avatars.vcard_temp_photo(vcard_temp(f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{wrapped}</BINVAL></PHOTO>"))
    assert found == Image(PNG, "image/png", hashlib.sha1(PNG).hexdigest())


def test_vcard_temp_photo_missing_type_is_sniffed():
    found = avatars.vcard_temp_photo(vcard_temp(f"<PHOTO><BINVAL>{PNG_B64}</BINVAL></PHOTO>"))
    assert found.content_type == "image/png"


def test_vcard_temp_extval_is_a_link():
    assert avatars.vcard_temp_photo(vcard_temp("<PHOTO><EXTVAL>http://example.com/p.gif</EXTVAL></PHOTO>")) == \
        Link("http://example.com/p.gif")


@pytest.mark.parametrize("payload, reason", [
    ("<vCard xmlns='vcard-temp'/>", "has no PHOTO"),
    ("<vCard xmlns='vcard-temp'><FN>A</FN></vCard>", "has no PHOTO"),
    ("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE></PHOTO></vCard>", "PHOTO has no BINVAL"),
    ("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL/></PHOTO></vCard>", "BINVAL is empty"),
    ("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>%%%</BINVAL></PHOTO></vCard>", "not valid base64"),
    ("", "has no PHOTO"),  # a result without any vCard
])
def test_vcard_temp_without_a_usable_photo(payload, reason):
    with pytest.raises(NoAvatar, match=reason):
        avatars.vcard_temp_photo(reply(payload))


def test_with_photo_replaces_photo_and_keeps_other_fields():
    current = avatars.vcard_temp_of(vcard_temp(
        "<FN>Alice</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>R0lGODlh</BINVAL></PHOTO><NICKNAME>al</NICKNAME>"))
    updated = avatars.with_photo(current, PNG, "image/png")
    ns = "{vcard-temp}"
    assert [child.tag for child in updated] == [f"{ns}FN", f"{ns}NICKNAME", f"{ns}PHOTO"]
    assert updated.findtext(f"{ns}FN") == "Alice"
    assert updated.findtext(f"{ns}PHOTO/{ns}TYPE") == "image/png"
    assert base64.b64decode(updated.findtext(f"{ns}PHOTO/{ns}BINVAL")) == PNG
    assert len(current) == 3, "the vCard read from the server is left as it was"


def test_with_photo_on_no_vcard():
    updated = avatars.with_photo(None, PNG, "image/png")
    assert b"<ns0:vCard xmlns:ns0=\"vcard-temp\"><ns0:PHOTO>" in tostring(updated)


def test_vcard_temp_iq_get_and_set():
    get = avatars.vcard_temp_iq("alice@example.com")
    assert (get.get("type"), get[0].tag) == ("get", "{vcard-temp}vCard")
    vcard = avatars.with_photo(None, PNG, "image/png")
    assert avatars.vcard_temp_iq("alice@example.com", vcard).get("type") == "set"


# --- ETag ------------------------------------------------------------------------------------


@pytest.mark.parametrize("header, matches", [
    ('"abc"', True),
    ('W/"abc"', True),
    ('"x", "abc"', True),
    ("*", True),
    ('"abcd"', False),
    ("abc", False),  # an entity tag is quoted
    ("", False),
    (None, False),
])
def test_if_none_match(header, matches):
    assert avatars.etag("abc") == '"abc"'
    assert avatars.etag_matches(header, "abc") is matches
