"""Loading handler scripts from scripts/rest/<folder>/*.py and resolving paths to handlers."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tigase_rest.loader import load_routes

REPO = Path(__file__).resolve().parents[2]


def script(body: str) -> str:
    return "from tigase_rest.handlers import Handler\n\n" + textwrap.dedent(body)


def handler(name: str, regex: str, answer: str = "", groups: str = "") -> str:
    params = ", " + groups if groups else ""
    return script(f'''
        class {name}(Handler):
            regex = {regex!r}

            def exec_get(self, service, callback{params}):
                return {answer or name!r}
    ''')


@pytest.fixture
def scripts(tmp_path):
    root = tmp_path / "rest"
    root.mkdir()

    def write(relative: str, text: str) -> Path:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    write.root = root
    return write


def answer(table, path):
    resolved = table.resolve(path)
    if resolved is None:
        return None
    route, groups = resolved
    return route.handler.exec_get(None, None, *groups)


def test_the_folder_is_the_url_prefix(scripts):
    scripts("adhoc/commands.py", handler("Commands", r"/(\w+)", groups="name"))
    table = load_routes(scripts.root)
    route, groups = table.resolve("/adhoc/abc")
    assert (route.folder, groups, route.path_pattern) == ("adhoc", ("abc",), r"/adhoc/(\w+)")
    assert table.resolve("/other/abc") is None
    assert table.resolve("/abc") is None


def test_the_file_name_does_not_matter(scripts):
    scripts("x/anything_at_all.py", handler("H", "/y"))
    assert answer(load_routes(scripts.root), "/x/y") == "H"


def test_the_regex_must_match_the_whole_rest_of_the_path(scripts):
    scripts("a/h.py", handler("H", "/x"))
    table = load_routes(scripts.root)
    assert answer(table, "/a/x") == "H"
    for path in ("/a/xy", "/a/x/", "/a/yx", "/a", "/a/"):
        assert table.resolve(path) is None, path


def test_an_empty_regex_serves_the_folder_itself(scripts):
    scripts("status/h.py", handler("H", ""))
    table = load_routes(scripts.root)
    assert answer(table, "/status") == "H"
    assert table.resolve("/status/") is None


def test_the_longest_pattern_is_tried_first(scripts):
    # The generic handler sorts first by file name; the longer pattern still wins where both match.
    scripts("a/a_generic.py", handler("Generic", "/(.*)", groups="rest"))
    scripts("a/b_specific.py", handler("Specific", r"/special/(\w+)", groups="name"))
    table = load_routes(scripts.root)
    assert answer(table, "/a/special/foo") == "Specific"
    assert answer(table, "/a/other") == "Generic"
    assert [r.handler.regex for r in table.by_folder["a"]] == [r"/special/(\w+)", "/(.*)"]


def test_several_handlers_in_one_script(scripts):
    scripts("a/two.py", script('''
        class One(Handler):
            regex = "/one"
            def exec_get(self, service, callback):
                return "one"

        class Two(Handler):
            regex = "/two"
            def exec_get(self, service, callback):
                return "two"
    '''))
    table = load_routes(scripts.root)
    assert (answer(table, "/a/one"), answer(table, "/a/two")) == ("one", "two")


def test_a_broken_script_is_skipped_and_recorded_while_the_others_load(scripts):
    scripts("a/good.py", handler("Good", "/good"))
    syntax = scripts("a/syntax.py", "from tigase_rest.handlers import Handler\nclass Broken(Handler)\n")
    missing = scripts("a/imports.py", script("import no_such_module_anywhere\n"))
    scripts("b/also_good.py", handler("AlsoGood", "/fine"))
    table = load_routes(scripts.root)
    assert answer(table, "/a/good") == "Good"
    assert answer(table, "/b/fine") == "AlsoGood"
    errors = dict(table.errors)
    assert set(errors) == {syntax, missing}
    assert errors[syntax].startswith("SyntaxError")
    assert "no_such_module_anywhere" in errors[missing]


def test_a_script_that_raises_at_import_is_skipped(scripts):
    scripts("a/good.py", handler("Good", "/good"))
    bad = scripts("a/raises.py", script("raise RuntimeError('boom at import')\n"))
    table = load_routes(scripts.root)
    assert answer(table, "/a/good") == "Good"
    assert table.errors == [(bad, "RuntimeError: boom at import")]


def test_a_script_without_a_handler_subclass_is_an_error(scripts):
    path = scripts("a/nothing.py", "class NotAHandler:\n    pass\n")
    table = load_routes(scripts.root)
    assert table.by_folder == {}
    assert len(table.errors) == 1 and table.errors[0][0] == path
    assert "no subclass" in table.errors[0][1]


def test_importing_handler_is_not_defining_one(scripts):
    scripts("a/only_import.py", script("x = Handler\n"))
    assert len(load_routes(scripts.root).errors) == 1


@pytest.mark.parametrize("body, needle", [
    ('class H(Handler):\n    regex = "/("\n    def exec_get(self, service, callback):\n        pass\n', "regex"),
    ('class H(Handler):\n    regex = "/x"\n', "exec_get"),
    ('class H(Handler):\n    required_role = "root"\n    def exec_get(self, service, callback):\n        pass\n',
     "required_role"),
])
def test_invalid_handlers_are_errors_naming_the_problem(scripts, body, needle):
    scripts("a/good.py", handler("Good", "/good"))
    scripts("a/bad.py", script(body))
    table = load_routes(scripts.root)
    assert answer(table, "/a/good") == "Good"
    assert len(table.errors) == 1 and needle in table.errors[0][1]


def test_static_hidden_and_cache_folders_and_other_files_are_ignored(scripts):
    scripts("static/h.py", handler("Static", "/x"))
    scripts(".hidden/h.py", handler("Hidden", "/x"))
    scripts("__pycache__/h.py", handler("Cache", "/x"))
    scripts("a/readme.txt", "not python")
    scripts("a/h.py", handler("H", "/x"))
    table = load_routes(scripts.root)
    assert set(table.by_folder) == {"a"}
    assert table.errors == []


def test_a_missing_scripts_dir_loads_nothing(tmp_path):
    table = load_routes(tmp_path / "absent")
    assert table.by_folder == {} and table.routes() == []


def test_reload_gives_fresh_modules_and_sees_an_edit_of_the_same_size(scripts, monkeypatch):
    # With bytecode caching on (the default outside this test environment), a .pyc whose recorded
    # mtime (whole seconds) and size match the source is reused: an edit within the same second
    # must still be seen by a reload.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = scripts("a/h.py", handler("H", "/x", answer="one"))
    first = load_routes(scripts.root)
    path.write_text(handler("H", "/x", answer="two"), encoding="utf-8")
    second = load_routes(scripts.root)
    assert answer(first, "/a/x") == "one"
    assert answer(second, "/a/x") == "two"
    assert type(first.by_folder["a"][0].handler) is not type(second.by_folder["a"][0].handler)
    assert type(first.by_folder["a"][0].handler).__module__ != type(second.by_folder["a"][0].handler).__module__


def test_a_reload_drops_the_previous_modules_and_old_handlers_still_work(scripts):
    scripts("a/h.py", handler("H", "/x", answer="one"))
    first = load_routes(scripts.root)
    old_module = type(first.by_folder["a"][0].handler).__module__
    assert old_module in sys.modules
    for _ in range(3):
        latest = load_routes(scripts.root)
    loaded = [n for n in sys.modules if n.startswith("tigase_rest_scripts.")]
    assert loaded == [type(latest.by_folder["a"][0].handler).__module__]
    assert answer(first, "/a/x") == "one"  # a request still holding the old handler finishes


def test_a_script_fixed_on_reload_loads(scripts):
    path = scripts("a/h.py", "this is not python\n")
    assert load_routes(scripts.root).errors
    path.write_text(handler("H", "/x"), encoding="utf-8")
    table = load_routes(scripts.root)
    assert table.errors == [] and answer(table, "/a/x") == "H"


def test_signatures_are_computed_at_load_time(scripts):
    scripts("a/h.py", script('''
        class H(Handler):
            regex = r"/(\\w+)"
            required_role = "user"
            def exec_post(self, service, callback, user, content, name):
                pass
            def exec_get(self, service, callback, user, name):
                pass
    '''))
    route = load_routes(scripts.root).by_folder["a"][0]
    assert set(route.signatures) == {"GET", "POST"}
    assert route.signatures["POST"].content_slot is True
    assert route.signatures["GET"].content_slot is False


def test_the_shipped_scripts_load_without_errors():
    table = load_routes(REPO / "scripts" / "rest")
    assert table.errors == []
    route, groups = table.resolve("/stream/bob@example.com")
    assert route.folder == "stream" and groups == ("bob@example.com",)
    assert table.resolve("/stream")[1] == (None,)


def test_two_scripts_may_serve_one_path_with_different_methods(tmp_path):
    # Tigase ships AvatarGet and AvatarPutNoAuth with the same regex and different access.
    folder = tmp_path / "avatar"
    folder.mkdir()
    (folder / "get.py").write_text(
        "from tigase_rest.handlers import Handler\n"
        "class Get(Handler):\n"
        "    regex = r'/(\\w+)'\n"
        "    def exec_get(self, service, callback, name): return 'get'\n")
    (folder / "put.py").write_text(
        "from tigase_rest.handlers import Handler\n"
        "class Put(Handler):\n"
        "    regex = r'/(\\w+)'\n"
        "    required_role = 'admin'\n"
        "    def exec_put(self, service, callback, user, name): return 'put'\n")
    table = load_routes(tmp_path)
    assert type(table.resolve("/avatar/x", "GET")[0].handler).__name__ == "Get"
    assert type(table.resolve("/avatar/x", "PUT")[0].handler).__name__ == "Put"
    assert table.resolve("/avatar/x", "DELETE") is not None  # matched, but no handler for DELETE: 404 later
    assert table.methods_at("/avatar/x") == ["GET", "PUT"]


def test_later_folders_replace_scripts_of_the_same_folder_and_name_and_add_others(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for root, rel, name in ((first, "a/h.py", "FirstH"), (first, "a/other.py", "FirstOther"),
                            (second, "a/h.py", "SecondH"), (second, "b/new.py", "SecondNew")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(handler(name, "/" + Path(rel).stem, answer=name), encoding="utf-8")
    table = load_routes([first, second])
    assert answer(table, "/a/h") == "SecondH"
    assert answer(table, "/a/other") == "FirstOther"
    assert answer(table, "/b/new") == "SecondNew"
    assert [r.script for r in table.routes()].count(second / "a" / "h.py") == 1
    assert first / "a" / "h.py" not in [r.script for r in table.routes()]


def test_the_built_in_scripts_come_from_the_package_and_load_first(tmp_path):
    from tigase_rest.config import from_dict
    from tigase_rest.loader import builtin_scripts_dir, script_dirs

    builtin = builtin_scripts_dir()
    assert {p.name for p in builtin.iterdir() if p.is_dir() and not p.name.startswith("_")} >= {
        "stream", "adhoc", "avatar", "user", "health"}
    (tmp_path / "mine").mkdir()
    cfg = from_dict({"xmpp": {"secret": "s"}, "http": {"scripts_dir": "mine"}}, {}, tmp_path)
    assert script_dirs(cfg) == [builtin, tmp_path / "mine"]
    cfg = from_dict({"xmpp": {"secret": "s"}, "http": {"scripts_dir": "mine", "builtin_scripts": False}}, {}, tmp_path)
    assert script_dirs(cfg) == [tmp_path / "mine"]
