"""/rest/adhoc/{jid}: list and run XEP-0050 ad-hoc commands of any entity, as the caller.

The IQs go over the caller's own c2s session, so the server decides what the caller may do
(Tigase sends them with from=<user>). GET lists the commands; POST with only ``node`` returns
the command's form; POST with ``fields`` executes it. ``sessionid`` and ``action`` drive
multi-stage commands. XMPP errors become HTTP statuses with the condition and text in the body
(Tigase: a bare 404); a command whose ``<note type="error">`` reports a failure is 422 with the note
(Tigase: 200). The command may also be named as an attribute: ``<command node="uptime"/>``.

With ``[http] tigase_compat = true`` the answers take Tigase's exact shape (``tigase_shape``) and
``sess-man@{domain}`` / ``vhost-man@{domain}`` are answered by the server's own XEP-0133 commands at
``{domain}`` (``tigase_compat``: Tigase's node names mapped to the server's).
"""

from tigase_rest.api import (
    Handler, HttpError, accounts_changed_by, command_iq, command_result, commands_list, disco_commands_iq,
    parse_command_request, parse_jid, raise_for_error, raise_for_note, tigase_compat, tigase_shape,
)

LIST_EXAMPLE = "curl -u admin@example.com:password -H 'Api-Key: KEY' '{base}/adhoc/example.com?type=application/json'"
RUN_EXAMPLE = """curl -u admin@example.com:password -H 'Api-Key: KEY' -H 'Content-Type: application/json' \\
  --data '{"command": {"node": "http://jabber.org/protocol/admin#get-online-users-list",
           "fields": [{"var": "max_items", "value": "25"}]}}' \\
  {base}/adhoc/example.com"""


class AdHocCommands(Handler):
    regex = r"/(?:([^@/]+)@)?([^@/]+)(?:/(.*))?"  # a trailing slash is accepted (/rest/adhoc/example.com/)
    required_role = "user"
    description = {
        "regex": "/{jid}",
        "parameters": {"jid": "The entity whose commands to list or run: a domain, user@domain or user@domain/resource"},
        "GET": {
            "info": "List the ad-hoc commands of a JID",
            "description": "Commands the JID offers to you (XEP-0050 disco#items), as {items: [{jid, node, name}]}.",
            "example": LIST_EXAMPLE,
            "response": "CommandList",
        },
        "POST": {
            "info": "Get a command's form, or execute it",
            "description": "Body {command: {node, fields: [{var, value}]}}. Only node: the command's form. With "
                           "fields: the result (fields, note, reported tables). Optional sessionid and action "
                           "(next, prev, complete, cancel) continue a multi-stage command; the answer carries "
                           "sessionid, status and actions. Multi-value fields take a list. "
                           "On bosh@{domain}, node pre-bind-bosh-session (fields from, hold, wait) pre-binds "
                           "a BOSH session and answers from, hostname, rid, sid, hold and wait.",
            "example": RUN_EXAMPLE,
            "request": "CommandRequest",
            "response": "CommandResult",
        },
    }

    async def exec_get(self, service, callback, user, local, domain, resource):
        jid = target(local, domain, resource)
        if jid == bosh_jid(service):
            return service.bosh.commands_list(jid)
        alias = compat_alias(service, jid)
        if alias:
            kind, server = alias
            reply = None
            if kind == tigase_compat.SESS_MAN:
                reply = raise_for_error(await service.caller_request(disco_commands_iq(server)), server)
            return tigase_compat.commands_list(kind, jid, reply)
        reply = await service.caller_request(disco_commands_iq(jid))
        return commands_list(raise_for_error(reply, jid))

    async def exec_post(self, service, callback, user, content, local, domain, resource):
        jid = target(local, domain, resource)
        request = parse_command_request(content)
        if jid == bosh_jid(service):
            if request["node"] != service.bosh.NODE:
                raise HttpError(404, f"{jid} has no command {request['node']!r}, only {service.bosh.NODE!r}",
                                condition="item-not-found")
            login, password = service.caller_credentials()
            result = await service.bosh.execute(jid, request, login, password, service.is_admin(login))
            return tigase_shape(result, type_in_label=True) if compat(service) else result
        alias = compat_alias(service, jid)
        if alias:
            async def run(to, command):
                return raise_for_error(await service.caller_request(command_iq(to, command)), to)

            result = await tigase_compat.execute(run, alias[0], jid, alias[1], request)
        else:
            reply = await service.caller_request(command_iq(jid, request))
            result = command_result(jid, request["node"], raise_for_note(raise_for_error(reply, jid), jid))
            if compat(service):
                result = tigase_shape(result)
        # A changed password or a deleted account: the old credential must not stay cached.
        service.forget_credentials(accounts_changed_by(request))
        return result


def bosh_jid(service):
    """Tigase's BOSH component, served by this component itself: no such entity on other servers."""
    return f"bosh@{service.domain}"


def compat(service):
    return service.config.http.tigase_compat


def compat_alias(service, jid):
    """(sess-man|vhost-man, domain) in Tigase compatibility mode, else None."""
    return tigase_compat.alias_of(jid) if compat(service) else None


def target(local, domain, resource):
    raw = f"{local}@{domain}" if local else domain
    if resource:
        raw += "/" + resource
    return str(parse_jid(raw, "the URL"))
