"""tigase-rest: Tigase's REST API ("HTTP API" component) for any XMPP server, as an XEP-0114 component."""

__version__ = "0.1.0"
