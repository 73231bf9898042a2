"""BOSH pre-binding: the command's fields, checked (``from``, ``hold``, ``wait``)."""

from __future__ import annotations

from slixmpp.jid import JID, InvalidJID

DEFAULT_HOLD, MAX_HOLD = 1, 10
DEFAULT_WAIT, MAX_WAIT = 60, 600


def field_values(request: dict) -> dict[str, str]:
    """The first value of each field of a parsed command request (``forms.parse_command_request``), stripped."""
    return {var: (texts[0].strip() if texts else "") for var, texts in request["fields"]}


def parse_user(text: str) -> JID:
    try:
        user = JID(text)
    except InvalidJID as e:
        raise ValueError(f"'from' is not a valid JID: {text!r} ({e})") from None
    if not user.user or not user.domain:
        raise ValueError(f"'from' must be a user's JID (user@domain or user@domain/resource), not {text!r}")
    return user


def parse_count(name: str, text: str, default: int, maximum: int) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ValueError(f"'{name}' must be a whole number from 1 to {maximum}, not {text!r}")
    return int(text)
