"""HTTP input of the account endpoints: the body of PUT/POST /rest/user/{jid}; 400 with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...coding import check_xml_text
from ...errors import HttpError

MAX_PASSWORD = 1024
MAX_EMAIL = 320


@dataclass(frozen=True)
class UserChange:
    password: str | None = None
    email: str | None = None


def parse_user(content: Any, *, password_required: bool) -> UserChange:
    """``{user: {password, email?}}`` (or flat, or XML ``<user><password>..</password></user>``)."""
    if content is None:
        if password_required:
            raise HttpError(400, "No data received: send {\"user\": {\"password\": ...}}")
        return UserChange()
    if not isinstance(content, dict):
        raise HttpError(400, "The body must be an object {\"user\": {\"password\": ..., \"email\": ...}}")
    user = content.get("user", content)
    if user in ("", None):
        user = {}
    if not isinstance(user, dict):
        raise HttpError(400, "'user' must be an object with 'password' (and 'email')")
    password = _text(user.get("password"), "user.password", MAX_PASSWORD)
    if password_required and not password:
        raise HttpError(400, "The new account needs a 'password' (user.password)")
    email = _text(user.get("email"), "user.email", MAX_EMAIL)
    if email is not None and "@" not in email:
        raise HttpError(400, f"user.email is not an e-mail address: {email!r}")
    return UserChange(password or None, email or None)


def _text(value: Any, where: str, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise HttpError(400, f"{where} must be a string")
    text = str(value)
    if len(text) > limit:
        raise HttpError(400, f"{where} is longer than {limit} characters")
    return check_xml_text(text, where)
