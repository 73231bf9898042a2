"""Command line: ``tigase-rest --config FILE``, ``tigase-rest --check-config FILE``,
``tigase-rest --print-example-config``.

A config or file problem is one line on stderr naming the key or the file, and exit code 2; never a
traceback. ``--config`` checks the files the config names as ``--check-config`` does before it starts
(under systemd as the service's own user: a data_dir it cannot write stops the start, not a request);
only ``--check-config`` refuses a handler script that does not load.
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import sys
from pathlib import Path

from . import __version__, config


def example_config() -> str:
    """etc/config.example.toml, as shipped in the package."""
    return importlib.resources.files("tigase_rest").joinpath("config.example.toml").read_text(encoding="utf-8")


def check_scripts(cfg: config.Config) -> None:
    """Every handler script loads (``--check-config`` only: at start, a broken script is logged and
    listed on the index page, and the others serve). Raises ConfigError naming the first broken one."""
    from .loader import routes_for

    root = logging.getLogger()
    quiet = logging.NullHandler()  # the loader's own log lines (with tracebacks) stay out of the answer
    root.addHandler(quiet)
    try:
        routes = routes_for(cfg)
    finally:
        root.removeHandler(quiet)
    if routes.errors:
        script, error = routes.errors[0]
        more = f" (and {len(routes.errors) - 1} more)" if len(routes.errors) > 1 else ""
        raise config.ConfigError(f"handler script {script} does not load: {error.splitlines()[0]}{more}")
    if not routes.routes():
        raise config.ConfigError("no handlers: http.builtin_scripts is false and http.scripts_dir has no scripts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tigase-rest", description="Tigase-compatible REST API for any XMPP server (XEP-0114 component).")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", metavar="FILE", help="run with this TOML config")
    group.add_argument("--check-config", metavar="FILE",
                       help="validate a config, the files it names and the handler scripts, as this user; exit 0 when valid")
    group.add_argument("--print-example-config", action="store_true",
                       help="print the example config (every key, documented) and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)

    if args.print_example_config:
        sys.stdout.write(example_config())
        return 0
    path = Path(args.check_config or args.config)
    try:
        cfg = config.load(path)
        config.check_files(cfg)
        if args.check_config:
            check_scripts(cfg)
    except config.ConfigError as e:
        print(f"tigase-rest: {path}: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{path}: OK (component {cfg.xmpp.component_jid} -> {cfg.xmpp.host}:{cfg.xmpp.port}, "
              f"HTTP {cfg.http.host}:{cfg.http.port}{cfg.http.context_path}, data {cfg.data_path})")
        return 0

    from .app import run  # imported late: --check-config needs no event loop or XMPP library

    return run(cfg, path)


if __name__ == "__main__":
    sys.exit(main())
