"""Loads handler scripts from ``<scripts folder>/<folder>/*.py`` and resolves a path to a handler.

Where scripts come from, in this order: the built-in ones (``scripts/rest/`` in the source tree,
shipped in the package as ``tigase_rest.scripts``; skipped with ``http.builtin_scripts = false``),
then each folder of ``http.scripts_dir``. The override rule: a script is known by its folder and file
name (``user/status.py``); a later one with the same folder and name replaces the earlier one, any
other name adds to the folder.

The folder is the URL prefix. Within a folder, patterns are tried longest first and must match the
whole rest of the path (Tigase's PATTERN_COMPARATOR). Routing looks the folder up in a dict first,
so the cost of a request does not grow with the number of folders.
A script that fails to import is logged with its path and skipped; the others still serve.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.resources
import importlib.util
import itertools
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .handlers import METHODS, ROLES, Handler, Signature, signature_of

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

_generation = itertools.count(1)  # unique module names across reloads


@dataclass(frozen=True)
class Route:
    folder: str
    pattern: re.Pattern
    handler: Handler
    script: Path
    signatures: dict[str, Signature]

    @property
    def path_pattern(self) -> str:
        return f"/{self.folder}{self.handler.regex}"

    @functools.cached_property
    def label(self) -> str:
        """The route's name in metrics and logs: ``folder/Class`` (bounded, unlike paths)."""
        return f"{self.folder}/{type(self.handler).__name__}"


@dataclass
class RouteTable:
    by_folder: dict[str, list[Route]] = field(default_factory=dict)
    errors: list[tuple[Path, str]] = field(default_factory=list)

    def routes(self) -> list[Route]:
        return [r for folder in sorted(self.by_folder) for r in self.by_folder[folder]]

    def resolve(self, path: str, method: str | None = None) -> tuple[Route, tuple] | None:
        """The route for ``path`` (relative to the context path, starting with ``/<folder>``).

        With ``method``, the first matching route that implements it wins, so two scripts may serve
        the same path with different methods and access (Tigase's AvatarGet and AvatarPutNoAuth);
        when none implements it, the first match is returned and the caller answers 404 for the method."""
        folder = path[1:].split("/", 1)[0]
        rest = path[1 + len(folder):]
        first = None
        for route in self.by_folder.get(folder, ()):
            match = route.pattern.fullmatch(rest)
            if match:
                if method is None or route.handler.exec_for(method) is not None:
                    return route, match.groups()
                first = first or (route, match.groups())
        return first

    def methods_at(self, path: str) -> list[str]:
        """Every method some route serves at ``path``, for the 404 that names them."""
        folder = path[1:].split("/", 1)[0]
        rest = path[1 + len(folder):]
        return sorted({m for r in self.by_folder.get(folder, ()) if r.pattern.fullmatch(rest) for m in r.handler.methods()})


_MODULE_ROOT = "tigase_rest_scripts"  # handler modules are named <root>.g<load generation>.<folder>.<script>


def builtin_scripts_dir() -> Path:
    """The built-in handler scripts: the package's ``tigase_rest.scripts`` (the wheel carries
    ``scripts/rest`` there; an editable install maps it to the source folder)."""
    try:
        return Path(str(importlib.resources.files("tigase_rest.scripts")))
    except ModuleNotFoundError:  # a source tree on sys.path without an install
        return Path(__file__).resolve().parent.parent / "scripts" / "rest"


def script_dirs(config: Config) -> list[Path]:
    """The folders the handlers of ``config`` come from, in load order."""
    return ([builtin_scripts_dir()] if config.http.builtin_scripts else []) + list(config.scripts_paths)


def routes_for(config: Config) -> RouteTable:
    return load_routes(script_dirs(config))


def load_routes(scripts_dirs: Path | Iterable[Path]) -> RouteTable:
    table = RouteTable()
    generation = next(_generation)
    dirs = [scripts_dirs] if isinstance(scripts_dirs, Path) else list(scripts_dirs)
    scripts: dict[str, dict[str, Path]] = {}  # folder -> script name -> path; later folders override
    for scripts_dir in dirs:
        if not scripts_dir.is_dir():
            log.error("scripts_dir %s does not exist: no handlers loaded from it", scripts_dir)
            continue
        for folder in sorted(p for p in scripts_dir.iterdir() if p.is_dir() and p.name != "static"):
            if folder.name.startswith((".", "_")):
                continue
            for script in sorted(folder.glob("*.py")):
                previous = scripts.setdefault(folder.name, {}).get(script.name)
                if previous is not None and previous.resolve() != script.resolve():
                    log.info("Handler script %s replaces %s", script, previous)
                scripts[folder.name][script.name] = script
    for folder_name in sorted(scripts):
        routes = []
        for _, script in sorted(scripts[folder_name].items()):
            try:
                routes.extend(_load_script(folder_name, script, generation))
            except Exception as e:  # noqa: BLE001 - one broken script must not stop the others
                log.error("Skipping handler script %s: %s: %s", script, type(e).__name__, e, exc_info=True)
                table.errors.append((script, f"{type(e).__name__}: {e}"))
        if routes:
            routes.sort(key=lambda r: len(r.handler.regex), reverse=True)
            table.by_folder[folder_name] = routes
    _forget_older_generations(generation)
    count = sum(len(r) for r in table.by_folder.values())
    log.info("Loaded %d handlers from %s (%d scripts skipped)", count, ", ".join(map(str, dirs)) or "nowhere",
             len(table.errors))
    return table


def _forget_older_generations(generation: int) -> None:
    """Drop the modules of earlier loads from sys.modules, so reloads do not pile them up. Handlers
    still serving a request keep their own module alive through their functions' globals."""
    current = f"{_MODULE_ROOT}.g{generation}."
    for name in [n for n in sys.modules if n.startswith(_MODULE_ROOT + ".g") and not n.startswith(current)]:
        del sys.modules[name]


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Always compiles the script's current source. A cached .pyc is trusted when the source's
    mtime (whole seconds) and size match, so an edit of the same size within a second of the
    previous load would be ignored by a reload."""

    def get_code(self, fullname):
        return self.source_to_code(self.get_data(self.path), self.path)


def _load_script(folder: str, script: Path, generation: int) -> list[Route]:
    name = f"{_MODULE_ROOT}.g{generation}.{folder}.{script.stem}"
    loader = _FreshSourceLoader(name, str(script))
    spec = importlib.util.spec_from_file_location(name, script, loader=loader)
    assert spec is not None  # a .py path with a loader always gives a spec
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Handler) and obj is not Handler and obj.__module__ == name
    ]
    if not classes:
        raise ValueError("defines no subclass of tigase_rest.handlers.Handler")
    return [_route(folder, script, cls()) for cls in classes]


def _route(folder: str, script: Path, handler: Handler) -> Route:
    cls = type(handler).__name__
    if handler.required_role not in ROLES:
        raise ValueError(f"{cls}.required_role must be one of {ROLES}, not {handler.required_role!r}")
    try:
        pattern = re.compile(handler.regex)
    except re.error as e:
        raise ValueError(f"{cls}.regex {handler.regex!r} is invalid: {e}") from None
    if not handler.methods():
        raise ValueError(f"{cls} defines none of exec_get/exec_put/exec_post/exec_delete")
    signatures = {m: signature_of(handler, m, pattern.groups) for m in METHODS if handler.exec_for(m)}
    for method, sig in signatures.items():
        if not sig.varargs and sig.positional < sig.fixed + pattern.groups:
            # Found now rather than as a 500 on the first request.
            raise ValueError(f"{cls}.exec_{method.lower()} takes {sig.positional} positional arguments; it needs "
                             f"{sig.fixed} (service, callback, ...) + {pattern.groups} for the regex groups")
    return Route(folder, pattern, handler, script, signatures)
