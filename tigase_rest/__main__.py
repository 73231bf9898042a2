"""Command line: ``tigase-rest --config etc/config.toml`` or ``tigase-rest --check-config FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tigase-rest", description="Tigase-compatible REST API for any XMPP server (XEP-0114 component).")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", metavar="FILE", help="run with this TOML config")
    group.add_argument("--check-config", metavar="FILE", help="validate a config and exit (0 when valid)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)

    path = Path(args.check_config or args.config)
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        print(f"tigase-rest: {path}: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{path}: OK (component {cfg.xmpp.component_jid} -> {cfg.xmpp.host}:{cfg.xmpp.port}, "
              f"HTTP {cfg.http.host}:{cfg.http.port}{cfg.http.context_path})")
        return 0

    from .app import run  # imported late: --check-config needs no event loop or XMPP library

    return run(cfg, path)


if __name__ == "__main__":
    sys.exit(main())
