"""What a SIGHUP applies and what it names as needing a restart."""

from __future__ import annotations

from tigase_rest.app import changed_keys
from tigase_rest.config import from_dict


def cfg(**sections):
    return from_dict({"xmpp": {"secret": "s"}, **sections}, {})


def test_reload_names_what_it_applies_and_what_needs_a_restart():
    old = cfg(auth={"max_failures": 5}, log={"level": "info"})
    new = cfg(auth={"max_failures": 3, "admins": ["a@example.com"]}, log={"level": "debug"},
              xmpp={"secret": "other", "port": 5348}, http={"port": 9090, "builtin_scripts": False})
    applied, restart = changed_keys(old, new)
    assert applied == ["http.builtin_scripts", "auth.admins", "auth.max_failures"]
    assert restart == ["xmpp.port", "xmpp.secret", "http.port", "log.level"]
    assert changed_keys(old, old) == ([], [])
