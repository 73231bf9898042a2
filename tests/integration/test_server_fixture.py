"""The test server and the test clients themselves: if these fail, nothing else here means much."""

from __future__ import annotations

import asyncio

import pytest

from tools.servers import XmppServer

pytestmark = pytest.mark.portable


async def test_a_chat_message_arrives(xmpp_client) -> None:
    alice = await xmpp_client("alice")
    bob = await xmpp_client("bob")

    alice.xmpp.send_message(mto="bob@localhost", mbody="hello from alice", mtype="chat")

    msg = await bob.next_message()
    assert msg["body"] == "hello from alice"
    assert msg["from"].full == alice.jid


async def test_restart_after_a_kill_comes_back_on_the_same_ports(xmpp_server: XmppServer, xmpp_client) -> None:
    assert isinstance(xmpp_server, XmppServer)
    ports = (xmpp_server.c2s_port, xmpp_server.component_port, xmpp_server.http_port)
    try:
        xmpp_server.kill()
        assert not xmpp_server.running
    finally:
        # Always bring it back: the server is shared by the whole session.
        await asyncio.to_thread(xmpp_server.start)

    assert xmpp_server.running
    assert (xmpp_server.c2s_port, xmpp_server.component_port, xmpp_server.http_port) == ports
    bob = await xmpp_client("bob")
    assert bob.jid.startswith("bob@localhost/")
