"""The redacting log filter: no secret reaches a log line, other text is left alone."""

from __future__ import annotations

import io
import logging

import pytest

from tigase_rest.logs import REDACTED, RedactingFilter

SECRET = "component-s3cret"
API_KEY = "api-key-0123456789"


def redact(message: str, *args, secrets=(SECRET, API_KEY)) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args or None, None)
    assert RedactingFilter(list(secrets)).filter(record) is True  # redacts, never drops
    return record.getMessage()


def test_configured_secrets_are_removed_also_from_arguments():
    line = redact("secret=%s key=%s", SECRET, API_KEY)
    assert SECRET not in line and API_KEY not in line
    assert line == f"secret={REDACTED} key={REDACTED}"


def test_a_longer_secret_containing_a_shorter_one_is_removed_whole():
    line = redact("x abcdefgh y", secrets=("abcd", "abcdefgh"))
    assert line == f"x {REDACTED} y"


@pytest.mark.parametrize("stanza, payload", [
    ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHBhc3N3b3Jk</auth>",
     "AGFsaWNlAHBhc3N3b3Jk"),
    ('<auth mechanism="SCRAM-SHA-1" xmlns="urn:ietf:params:xml:ns:xmpp-sasl">biwsbj1hbGljZQ==</auth>',
     "biwsbj1hbGljZQ=="),
    ("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9Zm9v</response>", "Yz1iaXdzLHI9Zm9v"),
    ("<handshake>aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d</handshake>", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
    ("<handshake xmlns='jabber:component:accept'>0123abcd</handshake>", "0123abcd"),
])
def test_sasl_and_handshake_payloads_are_removed(stanza, payload):
    line = redact("SEND: %s", stanza)
    assert payload not in line
    assert REDACTED in line


@pytest.mark.parametrize("field", [
    "<field var='password' type='text-private'><value>hunter2</value></field>",
    "<field type='text-private' var='password'><value>hunter2</value></field>",
    '<field type="text-private" label="Password" var="password"><value>hunter2</value></field>',
    "<field var='password' type='text-private'>\n  <value xmlns='jabber:x:data'>hunter2</value>\n</field>",
])
def test_text_private_values_are_removed_whatever_the_attribute_order(field):
    line = redact("<x xmlns='jabber:x:data' type='submit'>%s<field var='accountjid'><value>bob@example.com</value>"
                  "</field></x>", field)
    assert "hunter2" not in line
    assert "<value>bob@example.com</value>" in line  # other fields are kept


@pytest.mark.parametrize("line, secret", [
    ("Authorization: Basic YWxpY2U6cGFzc3dvcmQ=", "YWxpY2U6cGFzc3dvcmQ="),
    ("authorization: bearer eyJhbGciOi.eyJzdWIi.sig", "eyJhbGciOi.eyJzdWIi.sig"),
    ("headers: {'Host': 'h', 'Authorization': 'Basic YWxpY2U6cGFzc3dvcmQ='}", "YWxpY2U6cGFzc3dvcmQ="),
    ('{"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}', "YWxpY2U6cGFzc3dvcmQ="),
    ("POST /rest/stream/?api-key=not-configured-key&type=application/json", "not-configured-key"),
    ("GET /rest/x?type=xml&API-KEY=other", "other"),
    ("Api-Key: not-configured-key", "not-configured-key"),
    ("headers: {'Api-Key': 'not-configured-key'}", "not-configured-key"),
])
def test_credentials_in_headers_and_query_strings_are_removed(line, secret):
    redacted = redact(line)
    assert secret not in redacted
    assert REDACTED in redacted


def test_the_rest_of_a_query_string_is_kept():
    assert redact("GET /rest/x?api-key=k&type=application/json") == \
        f"GET /rest/x?api-key={REDACTED}&type=application/json"


@pytest.mark.parametrize("line", [
    "Connecting component http.example.com to 127.0.0.1:5347",
    "<message to='bob@example.com'><body>authorization is needed</body></message>",
    "<authz>not sasl</authz><responses>x</responses>",
    "<field var='user' type='text-single'><value>alice</value></field>",
    "Missing required 'Api-Key' header (or 'api-key' query parameter)",
    "403 Provided Api-Key is not authorized to access /rest/stream",
])
def test_other_text_is_left_intact(line):
    assert redact(line) == line


def test_tracebacks_are_redacted_too():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([SECRET]))
    logger = logging.getLogger("tigase_rest.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError(f"bad secret {SECRET}")
        except ValueError:
            logger.exception("failed with %s", SECRET)
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert SECRET not in output
    assert "ValueError: bad secret [redacted]" in output
