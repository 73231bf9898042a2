"""The ``GET /rest/`` index page, generated from the loaded handlers' descriptions.

Like Tigase's page: grouped by folder prefix, one box per method with its path and summary.
No API key or login is needed to read it; it shows no secrets.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__

STATIC_DIR = Path(__file__).with_name("static")
# Served under <context>/static/ (shipped in the wheel: setup.cfg package_data).
STATIC_FILES = {p.name: p for p in sorted(STATIC_DIR.glob("*")) if p.suffix in (".js", ".css")}
# The page runs only its own script: no inline script, no other origin.
CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"

CONSOLE = """
<section id="console" data-base="{prefix}">
<h2>Console</h2>
<p>Calls this API from the page with your API key and login (nothing is stored).</p>
<fieldset><legend>Credentials</legend>
<div><label for="c-key">API key</label><input type="text" id="c-key" autocomplete="off"></div>
<div><label for="c-jid">Login (bare JID)</label><input type="text" id="c-jid" placeholder="admin@{domain}" autocomplete="username"></div>
<div><label for="c-password">Password</label><input type="password" id="c-password" autocomplete="current-password"></div>
</fieldset>
<fieldset><legend>Ad-hoc commands</legend>
<div><label for="c-target">Commands of</label><input type="text" id="c-target" value="{domain}">
<button type="button" id="c-list">List</button></div>
<ul id="c-commands"></ul>
<div id="c-form"></div>
</fieldset>
<fieldset><legend>Send a stanza (admin)</legend>
<textarea id="c-stanza">&lt;message xmlns="jabber:client" type="chat" to="user@{domain}"&gt;&lt;body&gt;Hello&lt;/body&gt;&lt;/message&gt;</textarea>
<button type="button" id="c-send">Send</button>
<pre id="c-stanza-result"></pre>
</fieldset>
<fieldset><legend>Avatar</legend>
<label for="c-avatar-jid">User JID</label><input type="text" id="c-avatar-jid" placeholder="user@{domain}">
<button type="button" id="c-avatar-get">Show</button>
<img id="c-avatar-img" alt="avatar" hidden>
</fieldset>
<p id="c-status" role="status"></p>
</section>
"""

if TYPE_CHECKING:
    from ..config import Config
    from ..loader import RouteTable

COLOURS = {"GET": "#0f6ab4", "POST": "#547f00", "PUT": "#c5862b", "DELETE": "#a41e22"}

STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
h2 { border-bottom: 1px solid #ccc; }
details { border: 1px solid #ddd; border-radius: 4px; margin: .4em 0; }
summary { padding: .4em; cursor: pointer; }
.m { display: inline-block; width: 5em; text-align: center; color: #fff; border-radius: 3px; font-weight: bold; }
.p { font-family: monospace; margin-left: .6em; }
.i { float: right; color: #555; }
.b { padding: .2em 1em 1em; }
pre { background: #f5f5f5; padding: .6em; overflow-x: auto; }
.warn { color: #a41e22; }
"""


def render_index(routes: "RouteTable", config: "Config", request, health: dict | None = None) -> str:
    base = f"{request.scheme}://{request.host}{config.http.prefix}"
    prefix = escape(config.http.prefix)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tigase-rest API</title>",
        f"<style>{STYLE}</style>",
        f"<link rel='icon' href='data:,'><link rel='stylesheet' href='{prefix}/static/console.css'>",
        f"<script src='{prefix}/static/console.js' defer></script></head><body>",
        f"<h1>tigase-rest {escape(__version__)}: REST API for {escape(config.xmpp.domain)}</h1>",
        "<p>Send JSON or XML. The answer's format follows the request's <code>Content-Type</code>, then the "
        "<code>type</code> parameter (<code>?type=application/json</code>), then <code>Accept</code>; XML otherwise. "
        "Most endpoints need an API key (<code>Api-Key</code> header or <code>api-key</code> parameter); "
        "endpoints with a role need HTTP Basic auth with a bare JID and its XMPP password. "
        "A method not listed for a path answers 404, as in Tigase. Errors carry their reason in the body. "
        f"The same description as an OpenAPI 3.1 document: <a href='{prefix}/openapi.json'>{prefix}/openapi.json</a>. "
        "Operations: <a href='/livez'>/livez</a>, <a href='/readyz'>/readyz</a>, <code>/metrics</code>.</p>",
        CONSOLE.replace("{prefix}", prefix).replace("{domain}", escape(config.xmpp.domain)),
        "<h2>Reference</h2>",
    ]
    parts.extend(_webhooks(config, health or {}))
    for folder, folder_routes in sorted(routes.by_folder.items()):
        parts.append(f"<h2>/{escape(folder)}</h2>")
        for route in sorted(folder_routes, key=lambda r: (r.handler.description or {}).get("regex", r.handler.regex)):
            parts.extend(_route_boxes(route, base))
    if routes.errors:
        parts.append("<h2 class='warn'>Scripts that failed to load</h2><ul>")
        parts.extend(f"<li><code>{escape(path.name)}</code>: {escape(err)}</li>" for path, err in routes.errors)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def _route_boxes(route, base: str) -> list[str]:
    handler = route.handler
    description = handler.description or {}
    shown_path = f"/{route.folder}{description.get('regex', handler.regex)}"
    access = []
    if handler.api_key:
        access.append("API key")
    if handler.required_role:
        login = f"login as {handler.required_role}"
        access.append(f"{login} (or API key alone)" if handler.api_key_replaces_login else login)
    out = []
    for method in handler.methods():
        info = description.get(method, {})
        colour = COLOURS.get(method, "#555")
        out.append(
            f"<details><summary><span class='m' style='background:{colour}'>{method}</span>"
            f"<span class='p'>{escape(shown_path)}</span>"
            f"<span class='i'>{escape(info.get('info', ''))}</span></summary><div class='b'>"
            f"<p>Access: {escape(', '.join(access) or 'open')}.</p>"
        )
        if info.get("description"):
            out.append(f"<p>{escape(info['description']).replace(chr(10), '<br/>')}</p>")
        example = info.get("example")
        if example:
            out.append(f"<pre>{escape(example.replace('{base}', base))}</pre>")
        out.append("</div></details>")
    return out


def _webhooks(config: "Config", health: dict) -> list[str]:
    """Bots over HTTP: where stanzas to the component's domain go, and the message queue (never the secret)."""
    w = config.webhooks
    domain = escape(config.xmpp.component_jid)
    if not w.url:
        return [f"<h2>Webhooks</h2><p>Off: set <code>[webhooks] url</code> to POST stanzas sent to "
                f"<code>{domain}</code> and <code>bot@{domain}</code> to a bot's HTTP service.</p>"]
    out = [f"<h2>Webhooks</h2><p>{escape(', '.join(w.stanzas))} stanzas to {escape(', '.join(w.events))} addresses "
           f"of <code>{domain}</code> are POSTed as <code>{escape(w.content_type)}</code> to "
           f"<code>{escape(w.url)}</code>{' (signed: X-Hub-Signature-256)' if w.secret else ''}; the answer is the "
           f"reply (XML, JSON or text/plain; 202/204: none; 4xx/5xx: an XMPP error). "
           f"JSON stanzas use Prosody mod_rest's keys; <code>POST /stream</code> takes them too.</p>"]
    if "webhook_queue" in health:
        out.append(f"<p>Message queue: {health['webhook_queue']} of {health['webhook_queue_max']}, receiver "
                   f"{escape(str(health['webhook_receiver']))}; delivered {health['webhook_delivered']}, "
                   f"retries {health['webhook_retries']}, bounced {health['webhook_bounced']}.</p>")
    return out
