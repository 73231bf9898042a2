"""A small HTTP client for the integration tests: what curl would do."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp


def basic(jid: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(jid, password)}


ADMIN = basic("admin@localhost", "adminpass")
ALICE = basic("alice@localhost", "alicepass")
KEY = {"Api-Key": "test-key"}


@dataclass
class Answer:
    status: int
    headers: dict
    text: str

    def json(self):
        return json.loads(self.text)


async def call(component, method: str, path: str, *, body=None, auth=ADMIN, headers=None) -> Answer:
    """A header given as None is not sent (e.g. {"Api-Key": None})."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers = {"Content-Type": "application/json", **(headers or {})}
    merged = {k: v for k, v in {**KEY, **(auth or {}), **(headers or {})}.items() if v is not None}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, component.url + path, data=body, headers=merged) as response:
            return Answer(response.status, dict(response.headers), await response.text())
