"""A scripted XMPP entity on the real server that answers as Tigase's vhost-man does.

Tigase's ``comp-repo-item-add``/``-update`` return their form until the submission echoes the
hidden ``command-marker`` field; ``-update`` also needs ``item-list`` naming the VHost. The
reference documentation's VHost examples (2.2.5) run against this entity.
"""

from __future__ import annotations

TLS_TEXT = ("This installation forces VHost to require TLS. If you need to use unencrypted connections set "
            "'vhost-tls-required' property to 'false' in the installation configuration file")
INSTRUCTIONS = "\u2757NOTE: Options without value set will use configuration defined in 'DEFAULT' VHost\u2757"


def serve_vhost_man(xmpp, vhosts: dict[str, dict]) -> None:
    """Register the two commands on a logged-in slixmpp client; ``vhosts`` records the results."""
    adhoc = xmpp.plugin["xep_0050"]
    forms = xmpp.plugin["xep_0004"]

    def form(update: bool):
        f = forms.make_form(ftype="form", title="Add/update VHost")
        f["instructions"] = INSTRUCTIONS
        if update:
            f.add_field(var="item-list", ftype="list-single", label="Select VHost",
                        options=[{"label": v, "value": v} for v in vhosts])
        f.add_field(var="Domain name", ftype="text-single")
        f.add_field(var="Enabled", ftype="boolean", value=True)
        f.add_field(var="Anonymous enabled", ftype="boolean", value=True)
        f.add_field(var="In-band registration", ftype="boolean", value=True)
        f.add_field(var="TLS", ftype="fixed", value=TLS_TEXT)
        f.add_field(var="Max users", ftype="text-single", value="0")
        f.add_field(var="command-marker", ftype="hidden", value="command-marker")
        return f

    def handler(update: bool):
        def run(iq, session):
            submitted = iq["command"]["form"].get_values() if iq["command"].xml.find(
                "{jabber:x:data}x") is not None else {}
            session["has_next"] = False
            session["next"] = None
            if submitted.get("command-marker") != "command-marker" or (update and not submitted.get("item-list")):
                session["payload"] = form(update)  # Tigase answers the form again
                return session
            vhosts[submitted["Domain name"]] = submitted
            result = forms.make_form(ftype="result")
            result.add_field(var="Note", ftype="fixed", value="Operation successful.")
            session["payload"] = result
            return session
        return run

    adhoc.add_command(node="comp-repo-item-add", name="Add new VHost", handler=handler(False))
    adhoc.add_command(node="comp-repo-item-update", name="Update VHost configuration", handler=handler(True))
