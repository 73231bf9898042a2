"""The public API for handler scripts: everything a script under ``scripts/rest/`` imports.

Scripts import from this module only (and the standard library); the modules behind it may move
between releases, these names do not. ``tests/unit/test_api.py`` checks both rules.

    from tigase_rest.api import Handler, HttpError, parse_bare_jid

    class Hello(Handler):
        regex = r"/([^/]+)"
        required_role = "user"

        async def exec_get(self, service, callback, user, jid):
            return {"hello": {"jid": str(parse_bare_jid(jid, "the URL")), "caller": user}}

- Handlers: :class:`Handler` (subclass it), :class:`Result` (bytes with a content type, status
  and headers), :class:`HttpError` (an error answer with its reason), :func:`from_xmpp_error`.
- :class:`Service`: the ``service`` argument (send/request/shortcut as the component, privileged_request
  as a user, caller_request as the caller, admin_request as either, read_body, and the features:
  ``statuses``, ``avatars``, ``bosh``, ``accounts``, ``health()``).
- JIDs: :func:`parse_jid`, :func:`parse_bare_jid` (400 naming the part of the request).
- XML and JSON: :func:`parse_xml` (defused, bounded), :func:`serialize`, :func:`encode`,
  :func:`negotiated_format`, ``CONTENT_TYPES``, stanza helpers (:func:`error_of`,
  :func:`raise_for_error`, :func:`renamespace`, :func:`split_tag`), XEP-0050/0004 forms.
- Feature request validation and answers: ``avatar``, ``presence`` and ``accounts`` below.
- Bots: :func:`stanza_to_json` / :func:`stanza_from_json` (stanzas as JSON in Prosody mod_rest's
  keys), :func:`posted_stanza` (a POST body as XML, JSON or text), :func:`shortcut_iq` and
  :func:`stanza_answer` (the GET ping/version/disco/items shortcuts).
"""

from __future__ import annotations

from .coding import CONTENT_TYPES, JSON, XML, encode, negotiated_format, parse_xml
from .errors import HttpError, from_xmpp_error
from .features.accounts.request import UserChange, parse_user
from .features.avatar import request as avatar_request
from .features.avatar.service import NotModified as AvatarNotModified
from .features.avatar.stanzas import Image as AvatarImage
from .features.avatar.stanzas import Link as AvatarLink
from .features.avatar.stanzas import etag, etag_matches
from .features.presence.request import DEFAULT_RESOURCE, Status, parse_status
from .features.presence.request import check_resource as check_status_resource
from .features.webhooks.request import posted_stanza, shortcut_iq, stanza_answer
from .features.webhooks.stanzas import from_json as stanza_from_json
from .features.webhooks.stanzas import to_json as stanza_to_json
from .handlers import Handler, Result
from .service import Service
from .xmpp.forms import (
    accounts_changed_by, command_iq, command_result, commands_list, disco_commands_iq, parse_command_request,
    raise_for_note, tigase_shape,
)
from .xmpp import tigase_compat
from .xmpp.stanzas import (
    CLIENT_NS, COMPONENT_NS, STANZA_NAMES, error_of, parse_bare_jid, parse_jid, raise_for_error, renamespace,
    serialize, split_tag,
)


__all__ = [
    # handlers
    "Handler", "Result", "HttpError", "from_xmpp_error", "Service",
    # JIDs, XML, JSON
    "parse_jid", "parse_bare_jid", "parse_xml", "serialize", "encode", "negotiated_format", "CONTENT_TYPES",
    "JSON", "XML", "CLIENT_NS", "COMPONENT_NS", "STANZA_NAMES", "error_of", "raise_for_error", "renamespace",
    "split_tag",
    # XEP-0050 ad-hoc commands and XEP-0004 forms
    "command_iq", "command_result", "commands_list", "disco_commands_iq", "parse_command_request",
    "accounts_changed_by", "raise_for_note",
    # http.tigase_compat: Tigase's answer shapes and its sess-man@/vhost-man@ entities
    "tigase_shape", "tigase_compat",
    # features
    "avatar_request", "AvatarImage", "AvatarLink", "AvatarNotModified", "etag", "etag_matches",
    "DEFAULT_RESOURCE", "Status", "parse_status", "check_status_resource", "UserChange", "parse_user",
    # bots: stanzas as JSON (mod_rest's keys), posted stanzas, the GET shortcuts
    "stanza_to_json", "stanza_from_json", "posted_stanza", "shortcut_iq", "stanza_answer",
]
