"""TLS to the server's c2s port: STARTTLS, certificate verified against the configured CA file.

A second Prosody that requires encryption, with a self-signed certificate for its domain."""

from __future__ import annotations

import subprocess

import pytest

from rest import ADMIN, call
from tools.prosody import ProsodyServer


@pytest.fixture(scope="module")
def tls_prosody(tmp_path_factory):
    server = ProsodyServer(tmp_path_factory.mktemp("prosody-tls"), tls=True)
    server.register("admin", "adminpass")
    server.start()
    yield server
    server.stop()


def tls_component(component_factory, server, ca_file):
    xmpp = dict(server.component_config(), c2s_tls="starttls", c2s_ca_file=str(ca_file))
    return component_factory(xmpp=xmpp)


async def test_starttls_with_the_servers_certificate_verified(component_factory, tls_prosody):
    component = tls_component(component_factory, tls_prosody, tls_prosody.cert_path)
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ADMIN)
    assert answer.status == 200
    assert any(item["node"].endswith("#add-user") for item in answer.json()["items"])
    assert "Stream encrypted" in tls_prosody.log_path.read_text()


async def test_a_certificate_from_another_ca_is_refused_and_no_password_is_sent(
        component_factory, tls_prosody, tmp_path):
    other_ca = tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other_ca)], check=True, capture_output=True)
    component = tls_component(component_factory, tls_prosody, other_ca)
    answer = await call(component, "GET", "/rest/adhoc/localhost?type=application/json", auth=ADMIN)
    assert answer.status == 502
    assert "certificate verify failed" in answer.json()["error"]["reason"]
    log = component.log_text()
    assert "<auth" not in log  # the login never started on an unverified stream
