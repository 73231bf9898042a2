"""BOSH pre-binding (Tigase's ``pre-bind-bosh-session`` on ``bosh@<domain>``): see ``service``."""

from .request import DEFAULT_HOLD, DEFAULT_WAIT, MAX_HOLD, MAX_WAIT, parse_count, parse_user
from .service import BoshClient, BoshPrebinding, PrebindRefused, prebind
from .stanzas import (DOMAIN_UNKNOWN, INVALID_DATA, NO_PERMISSION, NODE, NOT_SUPPORTED, BoshTerminated, Prebound,
                      parse_body)

__all__ = ["BoshClient", "BoshPrebinding", "BoshTerminated", "DEFAULT_HOLD", "DEFAULT_WAIT", "DOMAIN_UNKNOWN",
           "INVALID_DATA", "MAX_HOLD", "MAX_WAIT", "NODE", "NOT_SUPPORTED", "NO_PERMISSION", "PrebindRefused",
           "Prebound", "parse_body", "parse_count", "parse_user", "prebind"]
