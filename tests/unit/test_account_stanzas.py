"""The accounts feature's pure parts: XEP-0133 commands out, their answers in; the request body."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring, tostring

import pytest

from tigase_rest.errors import HttpError
from tigase_rest.features.accounts.request import parse_user
from tigase_rest.features.accounts.stanzas import (
    CommandFailed, admin_command_iq, query_iq, read_command, uptime_of, version_of,
)
from tigase_rest.xmpp.forms import raise_for_note

C = "http://jabber.org/protocol/commands"
X = "jabber:x:data"


def test_admin_command_with_its_form_in_the_first_execute():
    iq = admin_command_iq("example.com", "delete-user", {"accountjids": ["a@example.com", "b@example.com"]})
    assert tostring(iq, encoding="unicode") == (
        '<iq xmlns:ns0="http://jabber.org/protocol/commands" xmlns:ns1="jabber:x:data" type="set" to="example.com">'
        '<ns0:command node="http://jabber.org/protocol/admin#delete-user" action="execute"><ns1:x type="submit">'
        '<ns1:field var="FORM_TYPE"><ns1:value>http://jabber.org/protocol/admin</ns1:value></ns1:field>'
        '<ns1:field var="accountjids"><ns1:value>a@example.com</ns1:value><ns1:value>b@example.com</ns1:value>'
        '</ns1:field></ns1:x></ns0:command></iq>')


def test_a_bare_execute_has_no_form():  # ejabberd refuses a form on its list commands (503)
    iq = admin_command_iq("example.com", "get-registered-users-list")
    assert iq.find(f"{{{C}}}command/{{{X}}}x") is None


def reply(body):
    return fromstring(f'<iq xmlns="jabber:client" type="result" from="example.com">{body}</iq>')


def test_read_command_fields_labels_and_info_notes():
    answer = read_command(reply(
        f'<command xmlns="{C}" status="completed"><note type="info">ok</note><x xmlns="{X}" type="form">'
        '<field var="FORM_TYPE"><value>http://jabber.org/protocol/admin</value></field>'
        '<field var="registereduserjids" label="Users"><value>a@x</value><value>b@x</value></field></x></command>'),
        "example.com")
    assert answer.fields == {"registereduserjids": ["a@x", "b@x"]}
    assert answer.labels == {"registereduserjids": "Users"}
    assert answer.notes == [("info", "ok")]


def test_an_error_note_is_a_failure_and_an_iq_error_its_http_status():
    with pytest.raises(CommandFailed) as failed:
        read_command(reply(f'<command xmlns="{C}" node="n"><note type="error">User does not exist</note></command>'), "d")
    assert failed.value.text == "User does not exist"
    error = fromstring('<iq xmlns="jabber:client" type="error"><error type="cancel">'
                       '<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>')
    with pytest.raises(HttpError) as http:
        read_command(error, "d")
    assert (http.value.status, http.value.condition) == (409, "conflict")


def test_raise_for_note_is_422_with_the_note():
    with pytest.raises(HttpError) as http:
        raise_for_note(reply(f'<command xmlns="{C}" node="add"><note type="error">Account already exists</note></command>'), "d")
    assert http.value.status == 422 and http.value.text == "Account already exists"
    ok = reply(f'<command xmlns="{C}" node="add"><note type="info">done</note></command>')
    assert raise_for_note(ok, "d") is ok


def test_uptime_and_version():
    assert query_iq("d", "jabber:iq:last").find("{jabber:iq:last}query") is not None
    assert uptime_of(reply('<query xmlns="jabber:iq:last" seconds="42"/>'), "d") == 42
    assert uptime_of(reply('<query xmlns="jabber:iq:last"/>'), "d") is None
    assert version_of(reply('<query xmlns="jabber:iq:version"><name>Prosody</name><version>0.12.3</version></query>'),
                      "d") == {"name": "Prosody", "version": "0.12.3"}


@pytest.mark.parametrize("content", [{"user": {"password": "pw"}}, {"password": "pw"}, {"user": {"password": 1234}}])
def test_user_body(content):
    assert parse_user(content, password_required=True).password in ("pw", "1234")


@pytest.mark.parametrize("content, reason", [
    (None, "No data"), ([], "object"), ({"user": "x"}, "'user'"), ({"user": {}}, "needs a 'password'"),
    ({"user": {"password": ["a"]}}, "string"), ({"user": {"password": "x" * 1025}}, "longer"),
    ({"user": {"password": "a\x00b"}}, "U+0000"), ({"user": {"password": "p", "email": "nope"}}, "e-mail"),
])
def test_bad_user_bodies_are_400_with_the_reason(content, reason):
    with pytest.raises(HttpError) as e:
        parse_user(content, password_required=True)
    assert e.value.status == 400 and reason in e.value.reason


def test_a_post_may_change_nothing():
    assert parse_user(None, password_required=False).password is None
