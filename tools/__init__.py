"""Developer tools, outside the installed package: throwaway XMPP servers and ``make run``.

``prosody.py`` and ``ejabberd.py`` start a loopback-only server in a work dir (installing it with
apt when missing, as root); ``sandbox.py`` is ``make run``. Shared by the Makefile, the tests
(``tests/integration``) and the bench (``bench/``), all run from the repository root, which is
therefore on ``sys.path`` (``pythonpath = .`` in setup.cfg for pytest). Nothing here is used by
the component, and the wheel does not ship it (``packages.find`` includes ``tigase_rest*`` only).
"""
