"""Native HTTPS (http.tls_cert / http.tls_key) for a deployment without a reverse proxy."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest


def test_the_component_serves_https_with_its_own_certificate(component_factory, tmp_path):
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    component = component_factory(wait=False, http={"tls_cert": str(cert), "tls_key": str(key)})
    url = component.url.replace("http://", "https://") + "/rest/"
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                assert resp.status == 200
                break
        except OSError:
            if component.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no HTTPS answer. Log:\n{component.log_text()[-3000:]}")
            time.sleep(0.1)
    assert "HTTP API listening on https://" in component.log_text()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # a client that does not know the certificate refuses it
        urllib.request.urlopen(url, timeout=2, context=ssl.create_default_context())
