"""Logging setup. Secrets never reach a log line: a filter on the handler redacts the configured
secrets and API keys, SASL payloads and component handshakes in slixmpp's debug stanza dumps,
Authorization headers, and the values of ``text-private`` data form fields.

Two formats (``[log] format``): ``text``, one line per record, and ``json``, one JSON object per
line. Every record made while a request is handled carries its request id (``REQUEST_ID``, a
context variable the HTTP server sets; tasks started by the request inherit it)."""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import sys
from typing import Any

#: The id of the HTTP request being handled ("-" outside one); set by the HTTP server.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

REDACTED = "[redacted]"

# (text every match contains, lowercased; pattern; replacement). The text is looked for first: most
# lines (an access line, say) contain none of them, and a substring test is far cheaper than a scan.
_PATTERNS: list[tuple[str, re.Pattern[str], Any]] = [
    # SASL exchanges (PLAIN carries the password in base64) and the component handshake.
    ("<", re.compile(r"(<(auth|response|challenge|success|handshake)\b[^>]*>)[^<]*(</\2>)"), rf"\1{REDACTED}\3"),
    # <field type="text-private" ...><value>secret</value>: attribute order varies, so match the field.
    ("text-private", re.compile(r"(<field\b[^>]*type=['\"]text-private['\"][^>]*>.*?)(?=</field>)", re.S),
     lambda m: re.sub(r"(<value\b[^>]*>)[^<]*(</value>)", rf"\1{REDACTED}\2", m.group(1))),
    # A submitted form carries no field types: fields whose name says secret are redacted too
    # (add-user's password, change-user-password's password, tokens, the api-key commands' keys).
    ("<field", re.compile(r"(<field\b[^>]*var=['\"][^'\"]*(?:pass|secret|token|api-key)[^'\"]*['\"][^>]*>.*?)(?=</field>)",
                          re.S | re.I),
     lambda m: re.sub(r"(<value\b[^>]*>)[^<]*(</value>)", rf"\1{REDACTED}\2", m.group(1))),
    # A header line ("Authorization: Basic x") or a headers mapping's repr ("'Authorization': 'Basic x'").
    ("authorization", re.compile(r"(Authorization['\"]?:\s*['\"]?\w+\s+)[^\s'\",}]+", re.I), rf"\1{REDACTED}"),
    # The api-key query parameter, and the Api-Key header in the same two shapes.
    ("api-key", re.compile(r"(api-key=|api-key['\"]?:\s*['\"]?)[^&\s'\",}]+", re.I), rf"\1{REDACTED}"),
]


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, REDACTED)
        lowered = redacted.lower()
        for needle, pattern, replacement in _PATTERNS:
            if needle in lowered:
                redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_text is None:
            # Format the traceback now so the text can be redacted too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self.secrets:
                record.exc_text = record.exc_text.replace(secret, REDACTED)
        return True


class RequestIdFilter(logging.Filter):
    """Gives every record ``request_id``: the one passed in ``extra``, else the current request's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id when in a
    request, the fields of ``extra={"http": {...}}`` (the access log's), exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            data["request_id"] = request_id
        http = getattr(record, "http", None)
        if http:
            data.update(http)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup(level: str, secrets: list[str] | tuple[str, ...] = (), fmt: str = "text") -> RedactingFilter:
    # What no format of ours prints is not collected per record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a walk up the stack on every record), thread and process names.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        logging.getLogger("slixmpp").setLevel(logging.WARNING)  # its INFO lines are per-connection noise
    return redactor
