"""XEP-0050 commands and XEP-0004 data forms <-> Tigase's REST ``command`` payloads.

Request: ``{"command": {"node": ..., "fields": [{"var": ..., "value": "x" | ["a", "b"] | null}],
"sessionid"?, "action"?}}``; the XML notation decodes to the same data (see coding.py).
Response: Tigase's shape ``{"command": {"jid", "node", "fields", "title"?, "instructions"?,
"note"?, "reported"?}}`` plus what multi-stage commands need: ``sessionid``, ``status``,
``actions`` and the form's ``type`` (form/result).

Deviations from Tigase, each on purpose:
- values ``"0"``, ``"false"``, ``""`` and ``false`` are sent as values (Groovy truthiness dropped them);
- multi-value field types (list-multi, jid-multi, text-multi) always answer a list, other types a
  string (or null); Tigase decided by the count of values;
- ``label`` is the field's label and ``type`` its type (the reference shows the type as label);
- text is returned unescaped (Tigase double-escapes entities);
- a command whose ``<note type="error">`` reports a failure is 422 with the note (Tigase: 200).
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from ..coding import RepeatedElements, check_xml_text, local_name
from ..errors import HttpError
from .stanzas import parse_bare_jid

COMMANDS_NS = "http://jabber.org/protocol/commands"
DATA_NS = "jabber:x:data"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
ACTIONS = ("execute", "next", "prev", "complete", "cancel")
MULTI_TYPES = ("list-multi", "jid-multi", "text-multi")


# --- requests ----------------------------------------------------------------------------------


def disco_commands_iq(to: str) -> Element:
    iq = Element("iq", {"type": "get", "to": to})
    SubElement(iq, f"{{{DISCO_ITEMS_NS}}}query", {"node": COMMANDS_NS})
    return iq


def parse_command_request(content: Any) -> dict:
    """Validate a POST body and return {node, fields, sessionid, action}; 400 with the reason."""
    if content is None:
        raise HttpError(400, "No data received: send {\"command\": {\"node\": ..., \"fields\": [...]}}")
    if not isinstance(content, dict):
        raise HttpError(400, f"The body must be an object with a 'command', not a {_kind(content)}")
    command = content.get("command", content)  # a flat body is accepted too
    if not isinstance(command, dict):
        raise HttpError(400, f"'command' must be an object, not a {_kind(command)}")
    node = command.get("node")
    if not isinstance(node, str) or not node.strip():
        raise HttpError(400, "The command has no 'node': name the command to run (GET lists them)")
    check_xml_text(node, "'node'")
    fields = command.get("fields")
    if fields in (None, ""):
        fields = []
    if isinstance(fields, dict) and set(fields) == {"item"}:
        fields = fields["item"]  # XML with a single non-list child, e.g. <fields><item>..</item></fields>
    if isinstance(fields, dict):
        fields = [fields]
    if not isinstance(fields, list):
        raise HttpError(400, f"'fields' must be a list of {{var, value}} objects, not a {_kind(fields)}")
    checked = []
    for i, field in enumerate(fields):
        if not isinstance(field, dict):
            raise HttpError(400, f"fields[{i}] must be an object with 'var' and 'value', not a {_kind(field)}")
        var = field.get("var")
        if not isinstance(var, str) or not var:
            raise HttpError(400, f"fields[{i}] has no 'var'")
        check_xml_text(var, f"fields[{i}].var")
        checked.append((var, _values(field.get("value"), f"fields[{i}] ({var}).value")))
    sessionid = command.get("sessionid")
    if sessionid is not None and (not isinstance(sessionid, str) or not sessionid):
        raise HttpError(400, "'sessionid' must be the string the previous answer gave")
    if sessionid is not None:
        check_xml_text(sessionid, "'sessionid'")
    action = command.get("action") or None
    if action is not None and action not in ACTIONS:
        raise HttpError(400, f"'action' must be one of {', '.join(ACTIONS)}, not {action!r}")
    return {"node": node.strip(), "fields": checked, "sessionid": sessionid, "action": action}


# XEP-0133 commands after which an account's old password (or the account) is gone: the component
# must not keep accepting what it cached (CallerPool.forget). Fields: accountjid(s).
ACCOUNT_CHANGING_NODES = frozenset("http://jabber.org/protocol/admin#" + name for name in (
    "change-user-password", "delete-user", "end-user-session", "disable-user"))


def accounts_changed_by(request: dict) -> list[str]:
    """The bare JIDs a parsed command request (``parse_command_request``) changes or deletes, when
    its node is one of ``ACCOUNT_CHANGING_NODES``; values that are not JIDs are skipped."""
    if request["node"] not in ACCOUNT_CHANGING_NODES:
        return []
    jids = []
    for var, values in request["fields"]:
        if var in ("accountjid", "accountjids"):
            for value in values:
                try:
                    jids.append(str(parse_bare_jid(value.split("/", 1)[0], var)))  # a resource: the account
                except HttpError:
                    pass  # the server refused it too, or will: nothing of ours to forget
    return jids


def _values(value: Any, where: str) -> list[str]:
    """A field value as its list of <value/> texts: null -> none; "0", "", false are values."""
    if value is None:
        return []
    if isinstance(value, dict) and set(value) == {"item"}:
        value = value["item"]
    if isinstance(value, list):
        return [_scalar(v, where) for v in value]
    return [_scalar(value, where)]


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return check_xml_text(str(value), where)
    raise HttpError(400, f"{where} must be a string, number, boolean or a list of them, not a {_kind(value)}")


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


def command_iq(to: str, request: dict) -> Element:
    iq = Element("iq", {"type": "set", "to": to})
    attrs = {"node": request["node"]}
    if request["sessionid"]:
        attrs["sessionid"] = request["sessionid"]
    if request["action"]:
        attrs["action"] = request["action"]
    command = SubElement(iq, f"{{{COMMANDS_NS}}}command", attrs)
    if request["fields"] and request["action"] != "cancel":
        form = SubElement(command, f"{{{DATA_NS}}}x", {"type": "submit"})
        for var, values in request["fields"]:
            field = SubElement(form, f"{{{DATA_NS}}}field", {"var": var})
            for text in values:
                SubElement(field, f"{{{DATA_NS}}}value").text = text
    return iq


# --- replies -----------------------------------------------------------------------------------


def commands_list(reply: Element) -> dict:
    items = [
        {"jid": item.get("jid"), "node": item.get("node"), "name": item.get("name")}
        for item in reply.iter(f"{{{DISCO_ITEMS_NS}}}item")
    ]
    return {"items": items}


def command_result(jid: str, node: str, reply: Element) -> dict:
    command = reply.find(f"{{{COMMANDS_NS}}}command")
    result: dict[str, Any] = {"jid": jid, "node": node, "fields": []}
    if command is None:
        return {"command": result}
    result["node"] = command.get("node") or node
    if command.get("sessionid"):
        result["sessionid"] = command.get("sessionid")
    if command.get("status"):
        result["status"] = command.get("status")
    actions = command.find(f"{{{COMMANDS_NS}}}actions")
    if actions is not None:
        result["actions"] = [local_name(a.tag) for a in actions]
        if actions.get("execute"):
            result["default_action"] = actions.get("execute")
    form = command.find(f"{{{DATA_NS}}}x")
    if form is not None:
        result["type"] = form.get("type")
        title = form.findtext(f"{{{DATA_NS}}}title")
        if title:
            result["title"] = title
        instructions = [i.text or "" for i in form.findall(f"{{{DATA_NS}}}instructions")]
        if instructions:
            result["instructions"] = "\n".join(instructions)
        result["fields"] = [_field(f) for f in form.findall(f"{{{DATA_NS}}}field")]
        reported = form.find(f"{{{DATA_NS}}}reported")
        if reported is not None:
            result["reported"] = [_table(reported, form)]
    notes = [{"value": n.text or "", "type": n.get("type") or "info"} for n in command.findall(f"{{{COMMANDS_NS}}}note")]
    if notes:
        result["note"] = notes[0]
        if len(notes) > 1:
            result["notes"] = notes
    return {"command": result}


# What Tigase's AdHoc script answers (tigase-behaviour.md 2.1): no sessionid, status, actions or
# form type; fields carry only var, label, type, value and options.
TIGASE_COMMAND_KEYS = ("jid", "node", "fields", "title", "instructions", "note", "reported", "roster")
TIGASE_FIELD_KEYS = ("var", "label", "type", "value", "options")


def tigase_shape(result: dict, *, type_in_label: bool = False) -> dict:
    """``command_result``'s answer in Tigase's exact shape (``http.tigase_compat``): our additions
    dropped, a list value written in XML as repeated ``<value>`` elements (the reference's examples).
    ``type_in_label``: the field's type given as its ``label``, as Tigase's own commands send it
    (pre-bind-bosh-session, get-active-users in the reference)."""
    command = result.get("command", {})
    shaped = {k: command[k] for k in TIGASE_COMMAND_KEYS if k in command}
    fields = []
    for field in shaped.get("fields", []):
        out = {k: field[k] for k in TIGASE_FIELD_KEYS if k in field}
        if type_in_label and "type" in out:
            out["label"] = out.pop("type")
            out = {k: out[k] for k in TIGASE_FIELD_KEYS if k in out}
        if isinstance(out.get("value"), list):
            out["value"] = RepeatedElements(out["value"])
        fields.append(out)
    shaped["fields"] = fields
    return {"command": shaped}


def raise_for_note(reply: Element, who: str) -> Element:
    """The reply itself, unless its command reports a failure in a ``<note type="error">`` (Prosody's
    "Account already exists", "User does not exist"): then 422 with the note's text in the body.
    Tigase answers 200 with the note in the result."""
    command = reply.find(f"{{{COMMANDS_NS}}}command")
    if command is not None:
        for note in command.findall(f"{{{COMMANDS_NS}}}note"):
            if note.get("type") == "error":
                text = (note.text or "").strip() or "an error note"
                raise HttpError(422, f"{who} answered {command.get('node') or 'the command'} with an error: {text}",
                                text=text)
    return reply


def _field(element: Element) -> dict:
    kind = element.get("type")
    field: dict[str, Any] = {"var": element.get("var")}
    if element.get("label"):
        field["label"] = element.get("label")
    if kind:
        field["type"] = kind
    values = [v.text or "" for v in element.findall(f"{{{DATA_NS}}}value")]
    if kind in MULTI_TYPES or len(values) > 1:
        field["value"] = values
    elif values:
        field["value"] = values[0] or None
    elif kind != "fixed":
        field["value"] = None
    options = [
        {k: v for k, v in (("label", o.get("label")), ("value", o.findtext(f"{{{DATA_NS}}}value"))) if v is not None}
        for o in element.findall(f"{{{DATA_NS}}}option")
    ]
    if options:
        field["options"] = options
    if element.find(f"{{{DATA_NS}}}required") is not None:
        field["required"] = True
    desc = element.findtext(f"{{{DATA_NS}}}desc")
    if desc:
        field["desc"] = desc
    return field


def _table(reported: Element, form: Element) -> dict:
    columns = [_field(f) for f in reported.findall(f"{{{DATA_NS}}}field")]
    items = [
        {"fields": [{"var": f.get("var"), "value": _field(f).get("value")} for f in item.findall(f"{{{DATA_NS}}}field")]}
        for item in form.findall(f"{{{DATA_NS}}}item")
    ]
    return {"label": reported.get("label"), "fields": columns, "items": items}
