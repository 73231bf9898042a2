"""``GET /rest/openapi.json``: an OpenAPI 3.1 document generated from the loaded handlers.

A handler describes itself once, in its ``description`` class attribute; the index page and this
document both come from it::

    description = {
        "regex": "/{jid}[/{source}]",       # shown path; [...] is optional (two paths here)
        "parameters": {"jid": "A bare JID", "source": {"description": "...", "enum": ["a", "b"]}},
        "GET": {
            "info": "One line", "description": "More", "example": "curl ...",
            "request": "CommandRequest",         # a schema named below, an inline JSON schema, or
                                                 # {"media": {"image/*": {...}}} for other types
            "response": "CommandList",           # the 200 answer, the same forms
            "statuses": {"302": "A link"},        # other answers worth naming
        },
    }

A schema given by name is offered as JSON and as XML (Tigase's conventions: ``<item>`` lists).
Every operation also lists the error answers (the ``Error`` body), its security (``Api-Key``
header or ``api-key`` parameter, Basic auth with a bare JID) and the ``type`` parameter.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from ..config import Config
    from ..loader import Route, RouteTable

_STR = {"type": "string"}
_VALUE = {"description": "A string; a list for *-multi fields; null when empty",
          "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["status", "reason"], "properties": {
            "status": {"type": "integer", "description": "The HTTP status"},
            "reason": {"type": "string", "description": "What went wrong, for a human"},
            "condition": {"type": "string", "description": "The XMPP error condition, e.g. item-not-found"},
            "text": {"type": "string", "description": "The XMPP error text"}}}},
    },
    "CommandList": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
            "jid": _STR, "node": _STR, "name": {"type": ["string", "null"]}}}}},
    },
    "FieldValue": {"type": "object", "required": ["var"], "properties": {"var": _STR, "value": _VALUE}},
    "Field": {
        "type": "object", "properties": {
            "var": {"type": ["string", "null"]}, "label": _STR,
            "type": {"type": "string", "enum": ["boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi",
                                                "list-single", "text-multi", "text-private", "text-single"]},
            "value": _VALUE, "required": {"type": "boolean"}, "desc": _STR,
            "options": {"type": "array", "items": {"type": "object", "properties": {"label": _STR, "value": _STR}}}},
    },
    "CommandRequest": {
        "type": "object", "required": ["command"],
        "properties": {"command": {"type": "object", "required": ["node"], "properties": {
            "node": {"type": "string", "description": "The command's node"},
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldValue"},
                       "description": "Without fields: the command's form; with them: execute"},
            "sessionid": {"type": "string", "description": "Continue a multi-stage command"},
            "action": {"type": "string", "enum": ["execute", "next", "prev", "complete", "cancel"]}}}},
    },
    "CommandResult": {
        "type": "object", "required": ["command"],
        "properties": {"command": {"type": "object", "required": ["jid", "node", "fields"], "properties": {
            "jid": _STR, "node": _STR, "sessionid": _STR,
            "status": {"type": "string", "enum": ["executing", "completed", "canceled"]},
            "actions": {"type": "array", "items": {"type": "string", "enum": ["prev", "next", "complete"]}},
            "default_action": _STR,
            "type": {"type": "string", "enum": ["form", "result", "submit", "cancel"]},
            "title": _STR, "instructions": _STR,
            "fields": {"type": "array", "items": {"$ref": "#/components/schemas/Field"}},
            "reported": {"type": "array", "items": {"type": "object", "properties": {
                "label": {"type": ["string", "null"]},
                "fields": {"type": "array", "items": {"$ref": "#/components/schemas/Field"}},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldValue"}}}}}}}},
            "note": {"$ref": "#/components/schemas/Note"},
            "notes": {"type": "array", "items": {"$ref": "#/components/schemas/Note"}}}}},
    },
    "Note": {"type": "object", "properties": {"value": _STR, "type": {"type": "string", "enum": ["info", "warn", "error"]}}},
    "StatusRequest": {
        "type": "object", "description": "Flat, or inside a command root",
        "properties": {
            "available": {"type": ["string", "boolean"], "description": "true (default) or false"},
            "priority": {"type": ["string", "integer"], "description": "-128..127, default -1"},
            "show": {"type": "string", "enum": ["chat", "away", "xa", "dnd"]},
            "status": {"type": "string", "maxLength": 1024},
            "activity": {"type": "object", "properties": {"category": _STR, "type": _STR, "text": _STR}}},
    },
    "StatusResult": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "object", "properties": {
            "user": _STR, "available": {"type": ["string", "boolean"]}, "priority": {"type": ["string", "integer"]},
            "show": {"type": ["string", "null"]}, "status": {"type": ["string", "null"]},
            "success": {"type": ["string", "boolean"]}, "contacts": {"type": ["string", "integer"]},
            "reason": _STR}}},
    },
    "Health": {
        "type": "object", "required": ["health"],
        "properties": {"health": {"type": "object", "additionalProperties": True, "properties": {
            "status": _STR, "xmpp_link": {"type": "string", "enum": ["up", "down"]}}}},
    },
    "AvatarSet": {
        "type": "object", "properties": {"user": {"type": "object", "properties": {"jid": _STR, "hash": _STR}}},
    },
    "Stanza": {"type": "string", "description": "One XMPP stanza (message, presence or iq), UTF-8 XML"},
    "Readiness": {
        "type": "object", "properties": {
            "status": _STR, "xmpp_link": _STR, "handlers": _STR, "data_dir": _STR, "failed_scripts": {"type": "integer"}},
    },
}

ERRORS = {
    "400": "Bad input (the reason says what)", "401": "Login required or wrong password",
    "403": "No valid API key, or not allowed", "404": "Not found, or the method is not served here",
    "413": "Body or stanza too large", "415": "A body neither JSON nor XML", "429": "Too many failed logins",
    "500": "Handler failure", "502": "The XMPP server failed", "503": "The XMPP link is down (Retry-After)",
    "504": "No XMPP answer in time",
}

SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "Api-Key"},
    "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api-key"},
    "BasicAuth": {"type": "http", "scheme": "basic",
                  "description": "A bare JID and its XMPP password, checked by a real login to the server"},
}

_cache: tuple[object, str, bytes] | None = None


def openapi_document(routes: "RouteTable", config: "Config") -> bytes:
    """The document as JSON bytes, built once per loaded route table (a reload makes a new one)."""
    global _cache
    prefix = config.http.prefix
    if _cache is None or _cache[0] is not routes or _cache[1] != prefix:
        _cache = (routes, prefix, json.dumps(build(routes, config), indent=1).encode())
    return _cache[2]


def build(routes: "RouteTable", config: "Config") -> dict[str, Any]:
    prefix = config.http.prefix
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.routes():
        for template in route_paths(route):
            item = paths.setdefault(prefix + template, {})
            names = re.findall(r"\{([^}]+)\}", template)
            for method in route.handler.methods():
                if method.lower() in item:
                    continue  # an earlier route serves it (resolve's order)
                item[method.lower()] = _operation(route, method, names, template)
    paths.update(_builtin_paths(prefix))
    return {
        "openapi": "3.1.0",
        "info": {"title": f"tigase-rest: REST API for {config.xmpp.domain}", "version": __version__,
                 "description": "Tigase's REST API for any XMPP server. The answer's format follows the request's "
                                "Content-Type, then the `type` parameter, then Accept; XML otherwise. "
                                "Generated from the loaded handler scripts."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES,
                       "responses": {"Error": {"description": "An error with its reason",
                                               "content": _media("Error")}}},
    }


def route_paths(route: "Route") -> list[str]:
    """The path templates (after the context path) a route serves: its description's ``regex``
    with each ``[...]`` optional part expanded; a script without one gets ``/{folder}/{path}``."""
    shown = (route.handler.description or {}).get("regex")
    if shown is None:
        return [f"/{route.folder}/{{path}}"]
    out, todo = [], [shown]
    while todo:
        template = todo.pop()
        match = re.search(r"\[([^\[\]]*)\]", template)
        if match is None:
            out.append(f"/{route.folder}{template}")
        else:
            todo.append(template[:match.start()] + template[match.end():])
            todo.append(template[:match.start()] + match.group(1) + template[match.end():])
    return sorted(set(out), key=len)


def _operation(route: "Route", method: str, names: list[str], template: str) -> dict[str, Any]:
    handler = route.handler
    description = handler.description or {}
    info = description.get(method, {})
    declared = description.get("parameters", {})
    parameters: list[dict[str, Any]] = []
    for name in names:
        spec = declared.get(name, {})
        if isinstance(spec, str):
            spec = {"description": spec}
        schema: dict[str, Any] = {"type": "string"}
        if "enum" in spec:
            schema["enum"] = spec["enum"]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema,
                           "description": spec.get("description", _default_param(name, description, route))})
    parameters.append({"name": "type", "in": "query", "required": False,
                       "description": "The answer's format when the request has no Content-Type",
                       "schema": {"type": "string", "enum": ["application/json", "application/xml"]}})
    op: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9_]", "_", f"{route.folder}_{type(handler).__name__}_{method}_{template}"),
        "tags": [route.folder],
        "summary": info.get("info", f"{method} {route.folder}"),
        "parameters": parameters,
        "security": _security(handler),
    }
    text = info.get("description", "")
    if info.get("example"):
        text += "\n\nExample:\n\n```\n" + info["example"].replace("{base}", "http://HOST/rest") + "\n```"
    if text:
        op["description"] = text.strip()
    if "request" in info:
        op["requestBody"] = {"required": method in ("PUT", "POST"), "content": _content(info["request"])}
    elif method in ("PUT", "POST"):
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}},
                                                            "application/xml": {"schema": {"type": "string"}}}}
    responses: dict[str, Any] = {"200": {"description": "Done"}}
    if "response" in info:
        responses["200"]["content"] = _content(info["response"])
    for status, what in info.get("statuses", {}).items():
        responses[str(status)] = {"description": what}
    for status, what in ERRORS.items():
        if status in ("401", "429") and not handler.required_role:
            continue
        responses.setdefault(status, {"description": what, "content": _media("Error")})
    op["responses"] = responses
    return op


def _default_param(name: str, description: dict, route: "Route") -> str:
    if "jid" in name:
        return "A JID (user@domain, domain, or with a /resource)"
    if name == "path":
        return f"The rest of the path, matched by the regex {route.handler.regex!r}"
    return name


def _content(spec: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        return _media(spec)
    if isinstance(spec, dict) and "media" in spec:
        return {media: {"schema": schema} for media, schema in spec["media"].items()}
    return {"application/json": {"schema": spec}, "application/xml": {"schema": spec}}


def _media(name: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"application/json": {"schema": ref}, "application/xml": {"schema": ref}}


def _security(handler) -> list[dict[str, list]]:
    keys: list[dict[str, list]] = [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]
    if handler.api_key and handler.required_role:
        both = [{**k, "BasicAuth": []} for k in keys]
        return both + keys if handler.api_key_replaces_login else both
    if handler.api_key:
        return keys
    if handler.required_role:
        return [{"BasicAuth": []}]
    return []


def _builtin_paths(prefix: str) -> dict[str, Any]:
    def op(summary: str, content: dict[str, Any], description: str, op_id: str, extra: dict | None = None) -> dict:
        return {"get": {"operationId": op_id, "summary": summary, "description": description, "security": [],
                        "tags": ["service"], "responses": {"200": {"description": "OK", "content": content}, **(extra or {})}}}

    ready = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
    return {
        f"{prefix}/": op("The index page and console", {"text/html": {"schema": {"type": "string"}}},
                         "Every endpoint with examples, and a console to run ad-hoc commands.", "index"),
        f"{prefix}/openapi.json": op("This document", {"application/json": {"schema": {"type": "object"}}},
                                     "OpenAPI 3.1, generated from the loaded handlers.", "openapi"),
        "/livez": op("Liveness", {"application/json": {"schema": {"type": "object"}}},
                     "200 while the process serves HTTP.", "livez"),
        "/readyz": op("Readiness", ready, "200 when the XMPP link is up, handlers are loaded and data_dir is "
                      "writable; else 503 naming what is not ready.", "readyz",
                      {"503": {"description": "Not ready", "content": ready}}),
        "/metrics": op("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}},
                       "Prometheus' text format; only for the addresses in [metrics] allow (else 403).", "metrics",
                       {"403": {"description": "Address not allowed", "content": _media("Error")}}),
    }
