"""Fakes for the XMPP side of the HTTP tests, and shared constants.

They stand where the XMPP server would be:
- ``FakeLink`` records what the component would send and answers IQs from a script;
- ``FakePool`` knows a few accounts, as the server's SASL login would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from xml.etree.ElementTree import Element

import aiohttp
from aiohttp.test_utils import TestClient

from tigase_rest import errors
from tigase_rest.config import from_dict
from tigase_rest.errors import challenge
from tigase_rest.xmpp.sessions import Caller

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-api-key-0123"
COMPONENT_JID = "http.example.com"
DOMAIN = "example.com"
MAX_BODY = 4096

ADMIN = ("admin@example.com", "adminpass")
ALICE = ("alice@example.com", "alicepass")  # a normal user
LOCKED = ("locked@example.com", "lockedpass")  # too many failed logins


def basic(account: tuple[str, str]) -> str:
    return aiohttp.encode_basic_auth(*account)


def admin_headers(**extra: str) -> dict[str, str]:
    return {"Api-Key": API_KEY, "Authorization": basic(ADMIN), "Content-Type": "application/xml", **extra}


class FakeLink:
    """Stands for the XEP-0114 link. ``reply``: an Element, an HttpError to raise, or iq -> Element."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[Element] = []
        self.requests: list[tuple[Element, float | None]] = []
        self.reply: Element | errors.HttpError | Callable[[Element], Element] | None = None

    def send(self, stanza: Element) -> None:
        if not self.connected:
            raise errors.link_down()
        self.sent.append(copy.deepcopy(stanza))

    async def request(self, iq: Element, timeout: float | None = None) -> Element:
        if not self.connected:
            raise errors.link_down()
        self.requests.append((copy.deepcopy(iq), timeout))
        if isinstance(self.reply, errors.HttpError):
            raise self.reply
        if callable(self.reply):
            return self.reply(iq)
        assert self.reply is not None, "the test did not script a reply"
        return copy.deepcopy(self.reply)


class FakePool:
    """Stands for the caller pool: the SASL login that verifies a Basic-auth password."""

    accounts = {ADMIN[0]: (ADMIN[1], True), ALICE[0]: (ALICE[1], False)}

    def __init__(self) -> None:
        self.logins: list[str] = []
        self.forgotten: list[str] = []

    def forget(self, jid: str) -> None:
        self.forgotten.append(jid)

    async def authenticate(self, jid, password: str, remote: str) -> Caller:
        bare = str(jid)
        self.logins.append(bare)
        if bare == LOCKED[0]:
            raise errors.HttpError(429, "Too many failed logins for this JID; retry in 42 s",
                                   headers={"Retry-After": "42"})
        account = self.accounts.get(bare)
        if account is None or account[0] != password:
            raise errors.HttpError(401, f"Invalid credentials for {bare}", headers=challenge())
        return Caller(bare, account[1])


@dataclass
class Api:
    client: TestClient
    config: Any
    link: FakeLink
    pool: FakePool

    def __getattr__(self, name: str):  # get/post/put/delete/request go to the client
        return getattr(self.client, name)


def make_config(scripts_dir: Path | None = None, **sections: dict):
    raw: dict[str, dict] = {
        "xmpp": {"secret": "s3cret", "component_jid": COMPONENT_JID, "domain": DOMAIN, "iq_timeout": 5},
        "http": {"max_body_bytes": MAX_BODY},
        "auth": {"api_keys": [API_KEY], "admins_from_server": False},
    }
    if scripts_dir is not None:
        raw["http"]["scripts_dir"] = str(scripts_dir)
        raw["http"]["builtin_scripts"] = False  # only the test's own scripts
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_dict(raw, {}, base_dir=REPO)
