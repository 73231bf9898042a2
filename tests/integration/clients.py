"""Real XMPP clients (slixmpp, plain c2s) logged in to the test Prosody.

Create them inside the test's event loop: slixmpp binds to the loop it is first used on.
"""

from __future__ import annotations

import asyncio

from slixmpp import ClientXMPP
from slixmpp.stanza import Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tools.prosody import is_privilege_notice, login, logout, plain_client


class XmppClient:
    """A logged-in client; every message and presence stanza it receives lands in a queue."""

    def __init__(self, xmpp: ClientXMPP) -> None:
        self.xmpp = xmpp
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.presences: asyncio.Queue[Presence] = asyncio.Queue()
        # Raw stanza handlers rather than the 'message' event, which skips messages without a
        # <body> (and errors): tests must see everything that arrives, except Prosody's noise.
        xmpp.register_handler(Callback("test messages", MatchXPath("{jabber:client}message"), self._on_message))
        xmpp.register_handler(Callback("test presences", MatchXPath("{jabber:client}presence"), self.presences.put_nowait))

    def _on_message(self, msg: Message) -> None:
        if not is_privilege_notice(msg):
            self.messages.put_nowait(msg)

    @property
    def jid(self) -> str:
        """The full JID the server bound."""
        return str(self.xmpp.boundjid)

    async def next_message(self, timeout: float = 5) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def disconnect(self, timeout: float = 5) -> None:
        await logout(self.xmpp, timeout)


async def connect_client(
    jid: str,
    password: str,
    host: str,
    port: int,
    *,
    resource: str = "test",
    presence: bool = True,
    timeout: float = 10,
) -> XmppClient:
    """Log ``jid`` in over plain c2s; raises ConnectionError if no session within ``timeout`` s."""
    client = XmppClient(plain_client(f"{jid}/{resource}", password))
    await login(client.xmpp, host, port, timeout)
    if presence:
        client.xmpp.send_presence()
    return client
