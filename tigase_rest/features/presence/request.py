"""What ``POST /rest/user/{jid}/status`` asks for: the request body as a :class:`Status`, 400 with
the reason otherwise (Tigase's UserStatus fields: available, priority, show, status, activity)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...coding import check_xml_text
from ...errors import HttpError

DEFAULT_RESOURCE = "tigase-external"
DEFAULT_PRIORITY = -1  # negative, as the Tigase docs advise
SHOWS = ("chat", "away", "xa", "dnd")
# XEP-0108 general categories; the category and type become element names, so both are checked.
ACTIVITY_CATEGORIES = ("doing_chores", "drinking", "eating", "exercising", "grooming", "having_appointment",
                       "inactive", "relaxing", "talking", "traveling", "undefined", "working")
ACTIVITY_TYPE = re.compile(r"[a-z_]{1,64}")
INTEGER = re.compile(r"[+-]?[0-9]{1,4}")  # not int(): it also takes "1_0" and non-ASCII digits
# Bounds, so that a status is always a small stanza: each one is re-sent to every contact on every
# reconnect, and one the server refuses (too large) would close the link each time.
MAX_TEXT = 1024  # characters of 'status' and 'activity.text'
MAX_RESOURCE = 256  # characters of the resource the status is shown from


@dataclass(frozen=True)
class Activity:
    """XEP-0108 user activity, as Tigase's script puts it in the presence."""

    category: str
    type: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Status:
    available: bool = True
    priority: int = DEFAULT_PRIORITY
    show: str | None = None
    status: str | None = None
    activity: Activity | None = None


def parse_status(content: Any) -> Status:
    """A POST body (flat, or wrapped in ``command`` or any other XML root) as a Status; 400 with
    the reason. No body means all defaults: available, priority -1."""
    if content is None or content == "":
        return Status()
    if not isinstance(content, dict):
        raise HttpError(400, f"The body must be an object like {{\"show\": \"xa\"}}, not a {_kind(content)}")
    if len(content) == 1:
        (key, inner), = content.items()
        # Tigase unwraps "command"; its XML parser also ignores the root's name (<status>, ...).
        # Only "activity" takes an object, so any other single object is a wrapper.
        if key == "command" or (key != "activity" and isinstance(inner, dict)):
            content = inner or {}
    if not isinstance(content, dict):
        raise HttpError(400, f"The body must be an object like {{\"show\": \"xa\"}}, not a {_kind(content)}")
    if not _available(content.get("available")):
        return Status(available=False)  # withdrawing always works: nothing else is sent, so nothing else is checked
    return Status(
        available=_available(content.get("available")),
        priority=_priority(content.get("priority")),
        show=_show(content.get("show")),
        status=_text(content.get("status"), "status"),
        activity=_activity(content.get("activity")),
    )


def _available(value: Any) -> bool:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise HttpError(400, f"'available' must be true or false, not {value!r}")


def _priority(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PRIORITY
    if isinstance(value, str) and INTEGER.fullmatch(value.strip()):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise HttpError(400, f"'priority' must be an integer from -128 to 127, not {value!r}")
    if not -128 <= number <= 127:
        raise HttpError(400, f"'priority' must be an integer from -128 to 127, not {number}")
    return number


def _show(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in SHOWS:
        raise HttpError(400, f"'show' must be one of {', '.join(SHOWS)}, not {value!r}")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"'{name}' must be a string, not a {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise HttpError(400, f"'{name}' is {len(value)} characters long; at most {MAX_TEXT} are allowed")
    return check_xml_text(value, f"'{name}'")


def check_resource(resource: str) -> str:
    """The resource a status is shown from (the URL's last part); 400 when it is too long."""
    if len(resource) > MAX_RESOURCE:
        raise HttpError(400, f"The resource is {len(resource)} characters long; at most {MAX_RESOURCE} are allowed")
    return resource


def stored_status(priority: Any, show: Any, status: Any, activity: dict | None) -> Status:
    """A status read back from the store, checked as a request is: a row written by an older
    version or by hand must not put an unsendable stanza on the link. HttpError when it is not valid."""
    return Status(True, _priority(priority), _show(show), _text(status, "status"), _activity(activity))


def _activity(value: Any) -> Activity | None:
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        raise HttpError(400, f"'activity' must be an object {{category, type, text}}, not a {_kind(value)}")
    category = value.get("category")
    if category not in ACTIVITY_CATEGORIES:
        raise HttpError(400, f"'activity.category' must be one of {', '.join(ACTIVITY_CATEGORIES)} "
                             f"(XEP-0108), not {category!r}")
    kind = _text(value.get("type"), "activity.type")
    if kind is not None and not ACTIVITY_TYPE.fullmatch(kind):
        raise HttpError(400, f"'activity.type' must be an XEP-0108 specific activity like 'partying', not {kind!r}")
    return Activity(category, kind, _text(value.get("text"), "activity.text"))


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "object", list: "list", str: "string"}
    return names.get(type(value), type(value).__name__)


