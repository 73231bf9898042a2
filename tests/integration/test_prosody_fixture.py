"""The test server and the test clients themselves: if these fail, nothing else here means much."""

from __future__ import annotations

import asyncio

from tools.prosody import ProsodyServer


async def test_a_chat_message_arrives(xmpp_client) -> None:
    alice = await xmpp_client("alice")
    bob = await xmpp_client("bob")

    alice.xmpp.send_message(mto="bob@localhost", mbody="hello from alice", mtype="chat")

    msg = await bob.next_message()
    assert msg["body"] == "hello from alice"
    assert msg["from"].full == alice.jid


async def test_restart_after_a_kill_comes_back_on_the_same_ports(prosody: ProsodyServer, xmpp_client) -> None:
    ports = (prosody.c2s_port, prosody.component_port, prosody.http_port)
    try:
        prosody.kill()
        assert not prosody.running
    finally:
        # Always bring it back: the server is shared by the whole session.
        await asyncio.to_thread(prosody.start)

    assert prosody.running
    assert (prosody.c2s_port, prosody.component_port, prosody.http_port) == ports
    bob = await xmpp_client("bob")
    assert bob.jid.startswith("bob@localhost/")
