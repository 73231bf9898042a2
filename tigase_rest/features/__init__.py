"""One package per feature, each split the same way (like a slixmpp plugin package):

- ``stanzas.py``: pure builders and readers of the feature's stanzas (no I/O; XML in, XML out);
- ``store.py``: state that survives a restart, where the feature has any;
- ``request.py``: validation of what an HTTP request asks for (400s with the reason);
- ``service.py``: the feature's operations, given only the link, sessions and store it uses.

Handler scripts under ``scripts/rest/`` reach a feature through ``tigase_rest.api`` and the
``service`` argument, never by importing these modules.
"""
