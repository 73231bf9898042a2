"""http.trusted_proxies: forwarded headers name the client only when the peer is a trusted proxy."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from tigase_rest.http.proxies import client_address


def request(peer: str, **headers: str):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 5555) if name == "peername" else default
    return make_mocked_request("GET", "/rest/", headers=CIMultiDict(
        {k.replace("_", "-"): v for k, v in headers.items()}), transport=transport)


@pytest.mark.parametrize("peer, headers, trusted, expected", [
    ("203.0.113.9", {"X_Forwarded_For": "198.51.100.1"}, (), "203.0.113.9"),  # default: headers ignored
    ("203.0.113.9", {"X_Forwarded_For": "198.51.100.1"}, ("127.0.0.1",), "203.0.113.9"),  # peer not trusted
    ("127.0.0.1", {"X_Forwarded_For": "198.51.100.1"}, ("127.0.0.1",), "198.51.100.1"),
    ("127.0.0.1", {"X_Forwarded_For": "6.6.6.6, 198.51.100.1"}, ("127.0.0.1",), "198.51.100.1"),  # forged first hop
    ("10.0.0.5", {"X_Forwarded_For": "198.51.100.1, 10.0.0.7"}, ("10.0.0.0/8",), "198.51.100.1"),
    ("127.0.0.1", {"Forwarded": 'for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"'}, ("127.0.0.1",), "2001:db8::1"),
    ("127.0.0.1", {"X_Forwarded_For": "not-an-address"}, ("127.0.0.1",), "127.0.0.1"),
    ("127.0.0.1", {}, ("127.0.0.1",), "127.0.0.1"),
])
def test_client_address(peer, headers, trusted, expected):
    assert client_address(request(peer, **headers), trusted) == expected
