"""The public API for handler scripts (tigase_rest/api.py) is what the shipped scripts use, and all
they use: a script that reaches into an internal module would break when that module moves."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import tigase_rest.api as api

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts" / "rest").glob("*/*.py"))


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), [alias.name for alias in node.names]))
    return found


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) >= 5, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_import_only_the_public_api_and_the_standard_library(script):
    for module, names in imports_of(script):
        top = module.split(".")[0]
        if module == "tigase_rest.api":
            missing = [n for n in names if n not in api.__all__]
            assert not missing, f"{script.name} imports {missing} from tigase_rest.api, which does not export them"
        else:
            assert top in sys.stdlib_module_names, (
                f"{script.name} imports {module!r}: scripts may import only tigase_rest.api and the standard library")


def test_every_exported_name_exists():
    assert [name for name in api.__all__ if not hasattr(api, name)] == []


def test_the_check_catches_an_internal_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from tigase_rest.xmpp.stanzas import parse_jid\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="may import only tigase_rest.api"):
        test_scripts_import_only_the_public_api_and_the_standard_library(bad)


def test_no_module_reaches_back_into_the_app():
    """app.serve assembles the parts and hands each what it uses; only the command line starts it."""
    package = REPO / "tigase_rest"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        for module, names in imports_of(path):
            if module.lstrip(".") == "app" and module.startswith(".") or module == "tigase_rest.app" \
                    or (module.lstrip(".") in ("", "tigase_rest") and "app" in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (rootdir import mode): two test_x.py in different
    folders stop the whole run at collection."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
