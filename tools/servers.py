"""What the tests and the bench need from a throwaway XMPP server, whichever it is.

:class:`XmppServer` is the interface :class:`tools.prosody.ProsodyServer` and
:class:`tools.ejabberd.EjabberdServer` both implement; :func:`make_server` builds one by name
(``--xmpp-server`` of the integration tests). Where the servers answer differently, the difference
is a class attribute of each (the "quirks" below), so a test that holds on both reads its
server-dependent expectation from the server object instead of being written twice.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

SERVERS = ("prosody", "ejabberd")


@runtime_checkable
class XmppServer(Protocol):
    name: str  # "prosody" | "ejabberd"
    domain: str
    component_jid: str
    component_secret: str
    c2s_port: int
    component_port: int
    http_port: int
    users: dict[str, str]  # localpart -> password, of the accounts register() created

    # --- quirks: what a REST caller sees differently on this server --------------------------
    bosh_path: str  # the BOSH endpoint: /http-bind (Prosody), /bosh (ejabberd)
    admin_command_count: int  # how many XEP-0133 (admin#...) commands an admin is offered
    admin_get_user_roster: bool  # admin#get-user-roster offered (not by ejabberd 23.01)
    user_commands: tuple[str, ...]  # the command nodes a normal user is offered on the domain
    forbidden_command_text: str  # the error <text/> when a normal user runs an admin command
    unknown_command_error: tuple[int, str]  # (HTTP status, XMPP condition) for an unknown command node
    unknown_iq_error_text: str | None  # the error <text/> for an IQ that no module handles
    registered_users_list: bool  # admin#get-registered-users-list and -num offered (not by Prosody 0.12)
    add_user_note: bool  # admin#add-user confirms with a <note/> (ejabberd: an empty <command/>)

    @property
    def bosh_url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self, timeout: float = ...) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def kill(self) -> None: ...

    def register(self, user_localpart: str, password: str) -> None: ...

    def component_config(self) -> dict[str, Any]: ...

    def log_tail(self, lines: int = 30) -> str: ...


def make_server(name: str, workdir: Path | None = None, **kwargs: Any) -> XmppServer:
    """A new (not yet started) server of the given kind in ``workdir``, or in a fresh temp dir.

    ejabberd's work dir must be reachable by the user ``ejabberd``: ``tempfile.mkdtemp()`` is,
    pytest's ``tmp_path`` is not (``/tmp/pytest-of-root`` is mode 0700; see tools.ejabberd).
    """
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"tigase-rest-{name}-"))
    if name == "prosody":
        from .prosody import ProsodyServer

        return ProsodyServer(workdir, **kwargs)
    if name == "ejabberd":
        from .ejabberd import EjabberdServer

        return EjabberdServer(workdir, **kwargs)
    raise ValueError(f"unknown XMPP server {name!r}: one of {', '.join(SERVERS)}")


def ensure_server(name: str) -> None:
    """Install the server with apt when missing (as root; otherwise a RuntimeError says the command)."""
    if name == "prosody":
        from .prosody import ensure_prosody

        ensure_prosody()
    elif name == "ejabberd":
        from .ejabberd import ensure_ejabberd

        ensure_ejabberd()
    else:
        raise ValueError(f"unknown XMPP server {name!r}: one of {', '.join(SERVERS)}")
