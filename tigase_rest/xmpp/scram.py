"""SCRAM with its key derivation done by hashlib (C) instead of slixmpp's pure-Python loop.

Prosody's default is 10,000 iterations: 47 ms of Python per login (blocking every other request
meanwhile) against 2.4 ms with ``hashlib.pbkdf2_hmac``, for the same bytes (Hi is PBKDF2 with one
block, RFC 5802). Registered through slixmpp's own mechanism registry, under the same names and
score as its SCRAM, so every SCRAM-* mechanism uses it.
"""

from __future__ import annotations

import hashlib

from slixmpp.util.sasl.client import sasl_mech
from slixmpp.util.sasl.mechanisms import SCRAM


@sasl_mech(SCRAM.score)
class FastSCRAM(SCRAM):
    def Hi(self, text, salt, iterations):
        return hashlib.pbkdf2_hmac(self.hash().name, bytes(text), bytes(salt), iterations)
