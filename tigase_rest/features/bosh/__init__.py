"""TEMPORARY shim until the login-stack branch lands features/bosh (replaced at merge)."""
from types import SimpleNamespace

from ... import bosh as _bosh


class BoshPrebinding:
    NODE = _bosh.NODE

    def __init__(self, xmpp):
        self._xmpp = xmpp

    def commands_list(self, jid):
        return _bosh.commands_list(jid)

    async def execute(self, jid, request, login, password, login_is_admin):
        svc = SimpleNamespace(config=SimpleNamespace(xmpp=self._xmpp), caller_credentials=lambda: (login, password),
                              caller=SimpleNamespace(is_admin=login_is_admin))
        return await _bosh.execute(svc, jid, request)
