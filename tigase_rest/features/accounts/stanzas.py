"""XEP-0133 admin commands in one round trip, and readers of their answers. Pure: XML in, XML out.

Each command is sent with its form inside the first ``execute`` (both Prosody and ejabberd complete
it at once). ``fields=None`` sends no form at all: ejabberd's list/count commands answer at once
to a bare execute and refuse any submitted form (503).

What the servers answer (measured on Prosody 0.12.3 and ejabberd 23.01):
- a failure as an IQ error (ejabberd: conflict for an existing account, item-not-found for a missing
  one) or as a completed command with ``<note type="error">`` (Prosody: "Account already exists",
  "User does not exist"); Prosody's delete-user reports a missing account in an *info* note
  ("The following accounts could not be deleted: ...").
- results in a form whose ``type`` is "result" (Prosody) or "form" (ejabberd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, SubElement

from ...xmpp.stanzas import raise_for_error

ADMIN_NS = "http://jabber.org/protocol/admin"
COMMANDS_NS = "http://jabber.org/protocol/commands"
DATA_NS = "jabber:x:data"
LAST_NS = "jabber:iq:last"
VERSION_NS = "jabber:iq:version"


def admin_node(command: str) -> str:
    return f"{ADMIN_NS}#{command}"


def admin_command_iq(domain: str, command: str, fields: dict[str, str | list[str]] | None = None) -> Element:
    """``<iq type=set to=domain>`` executing admin#command, with the submitted form when ``fields`` is given."""
    iq = Element("iq", {"type": "set", "to": domain})
    cmd = SubElement(iq, f"{{{COMMANDS_NS}}}command", {"node": admin_node(command), "action": "execute"})
    if fields is not None:
        form = SubElement(cmd, f"{{{DATA_NS}}}x", {"type": "submit"})
        for var, value in (("FORM_TYPE", ADMIN_NS), *fields.items()):
            f = SubElement(form, f"{{{DATA_NS}}}field", {"var": var})
            for text in ([value] if isinstance(value, str) else value):
                SubElement(f, f"{{{DATA_NS}}}value").text = text
    return iq


def query_iq(to: str, namespace: str) -> Element:
    """An empty ``<query/>`` get (jabber:iq:last for uptime, jabber:iq:version)."""
    iq = Element("iq", {"type": "get", "to": to})
    SubElement(iq, f"{{{namespace}}}query")
    return iq


class CommandFailed(Exception):
    """The command completed but its ``<note type="error">`` says it failed."""

    def __init__(self, who: str, node: str, text: str):
        super().__init__(f"{who} answered {node}: {text}")
        self.text = text


@dataclass
class CommandReply:
    fields: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (type, text)

    def value(self, var: str) -> str | None:
        values = self.fields.get(var)
        return values[0] if values else None


def read_command(reply: Element, who: str) -> CommandReply:
    """The fields and notes of a command's answer. An IQ error raises its HttpError (raise_for_error);
    an error note raises CommandFailed."""
    raise_for_error(reply, who)
    command = reply.find(f"{{{COMMANDS_NS}}}command")
    out = CommandReply()
    if command is None:
        return out
    for note in command.findall(f"{{{COMMANDS_NS}}}note"):
        kind, text = note.get("type") or "info", (note.text or "").strip()
        if kind == "error":
            raise CommandFailed(who, command.get("node") or "", text or "an error note")
        out.notes.append((kind, text))
    form = command.find(f"{{{DATA_NS}}}x")
    if form is not None:
        for f in form.findall(f"{{{DATA_NS}}}field"):
            var = f.get("var")
            if not var or var == "FORM_TYPE":
                continue
            out.fields[var] = [v.text or "" for v in f.findall(f"{{{DATA_NS}}}value")]
            if f.get("label"):
                out.labels[var] = f.get("label") or ""
    return out


def uptime_of(reply: Element, who: str) -> int | None:
    """Seconds since the server started, from a jabber:iq:last answer on the server's JID (XEP-0012)."""
    query = raise_for_error(reply, who).find(f"{{{LAST_NS}}}query")
    seconds = query.get("seconds") if query is not None else None
    return int(seconds) if seconds is not None and seconds.isdigit() else None


def version_of(reply: Element, who: str) -> dict[str, str]:
    """{name, version, os} from a jabber:iq:version answer (XEP-0092)."""
    query = raise_for_error(reply, who).find(f"{{{VERSION_NS}}}query")
    if query is None:
        return {}
    return {k: text for k in ("name", "version", "os") if (text := query.findtext(f"{{{VERSION_NS}}}{k}"))}
