"""Options for the whole suite; here (not in tests/integration) so that pytest knows them
whichever folder it is pointed at."""

from __future__ import annotations

import pytest

from tools.servers import SERVERS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--xmpp-server", choices=SERVERS, default="prosody",
        help="the real XMPP server the integration tests start (default: prosody). Tests marked "
             "for other servers only are deselected, never skipped: see tests/integration/conftest.py",
    )
