"""Config: defaults, env overrides, validation messages naming the key, and the --check-config CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tigase_rest import config
from tigase_rest.config import ApiKey, ConfigError

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"xmpp": {"secret": "s3cret"}}


def load(raw=None, env=None, base_dir=REPO):
    return config.from_dict(MINIMAL if raw is None else raw, env or {}, base_dir)


def error_of(raw=None, env=None, base_dir=REPO) -> str:
    with pytest.raises(ConfigError) as e:
        load(raw, env, base_dir)
    return str(e.value)


def test_defaults():
    cfg = load()
    assert (cfg.xmpp.host, cfg.xmpp.port, cfg.xmpp.c2s_port, cfg.xmpp.c2s_tls) == ("127.0.0.1", 5347, 5222, "starttls")
    assert cfg.xmpp.iq_timeout == 30.0
    assert (cfg.http.context_path, cfg.http.port, cfg.http.max_body_bytes) == ("/rest", 8080, 1024 * 1024)
    assert cfg.auth.api_keys == () and cfg.auth.open_access is False and cfg.auth.admins_from_server is True
    assert cfg.c2s_host == "127.0.0.1"
    assert cfg.scripts_paths == () and cfg.http.builtin_scripts is True
    assert cfg.data_path == REPO / "data"


def test_c2s_host_defaults_to_host():
    assert load({"xmpp": {"secret": "s", "host": "xmpp.example.com"}}).c2s_host == "xmpp.example.com"
    assert load({"xmpp": {"secret": "s", "c2s_host": "c2s.example.com"}}).c2s_host == "c2s.example.com"


def test_env_overrides_the_file():
    env = {
        "TIGASE_REST_XMPP_SECRET": "from-env",
        "TIGASE_REST_XMPP_PORT": "5348",
        "TIGASE_REST_XMPP_IQ_TIMEOUT": "2.5",
        "TIGASE_REST_HTTP_CONTEXT_PATH": "/api",
    }
    cfg = load({"xmpp": {"secret": "from-file", "port": 5347}}, env)
    assert cfg.xmpp.secret == "from-env"
    assert cfg.xmpp.port == 5348
    assert cfg.xmpp.iq_timeout == 2.5
    assert cfg.http.context_path == "/api"


def test_env_secret_alone_is_enough():
    assert load({}, {"TIGASE_REST_XMPP_SECRET": "only-env"}).xmpp.secret == "only-env"


def test_env_lists_are_comma_separated():
    env = {"TIGASE_REST_AUTH_API_KEYS": "k1, k2,,k3 ", "TIGASE_REST_AUTH_ADMINS": "a@example.com,b@example.com"}
    cfg = load(MINIMAL, env)
    assert cfg.auth.api_keys == (ApiKey("k1"), ApiKey("k2"), ApiKey("k3"))
    assert cfg.auth.admins == ("a@example.com", "b@example.com")


@pytest.mark.parametrize("text, expected", [("true", True), ("1", True), ("Yes", True), ("on", True),
                                            ("false", False), ("0", False), ("NO", False), ("off", False)])
def test_env_bools(text, expected):
    assert load(MINIMAL, {"TIGASE_REST_AUTH_OPEN_ACCESS": text}).auth.open_access is expected


def test_env_bad_bool_names_the_key():
    assert "auth.open_access" in error_of(MINIMAL, {"TIGASE_REST_AUTH_OPEN_ACCESS": "maybe"})


def test_env_bad_number_names_the_key():
    assert "xmpp.port" in error_of(MINIMAL, {"TIGASE_REST_XMPP_PORT": "five"})


def test_unknown_section_is_named():
    assert "[xmp]" in error_of({**MINIMAL, "xmp": {"host": "x"}})


def test_unknown_key_is_named():
    assert "xmpp.secert" in error_of({"xmpp": {"secret": "s", "secert": "typo"}})


def test_section_that_is_not_a_table_is_named():
    assert "[http]" in error_of({**MINIMAL, "http": "8080"})
    assert "[xmpp]" in error_of({"xmpp": 5})


@pytest.mark.parametrize("section, key, value", [
    ("xmpp", "port", "x"),
    ("xmpp", "port", True),
    ("xmpp", "port", 5347.5),
    ("xmpp", "iq_timeout", [1]),
    ("xmpp", "host", 127),
    ("http", "max_body_bytes", "big"),
    ("auth", "open_access", "perhaps"),
    ("auth", "open_access", 1),
    ("auth", "admins", ["a@example.com", 5]),
    ("auth", "api_keys", "key"),
])
def test_wrong_types_name_the_key(section, key, value):
    raw = {"xmpp": {"secret": "s"}}
    raw.setdefault(section, {})[key] = value
    assert f"{section}.{key}" in error_of(raw)


def test_numbers_given_as_strings_or_whole_floats_are_accepted():
    cfg = load({"xmpp": {"secret": "s", "port": "5348", "iq_timeout": 5}, "http": {"max_body_bytes": 1e6}})
    assert (cfg.xmpp.port, cfg.xmpp.iq_timeout, cfg.http.max_body_bytes) == (5348, 5.0, 1_000_000)


@pytest.mark.parametrize("section, key, value, needle", [
    ("xmpp", "port", 70000, "xmpp.port"),
    ("xmpp", "c2s_tls", "maybe", "xmpp.c2s_tls"),
    ("xmpp", "component_jid", "rest@http.example.com", "xmpp.component_jid"),
    ("xmpp", "bosh_url", "ftp://x", "xmpp.bosh_url"),
    ("xmpp", "iq_timeout", 0, "xmpp.iq_timeout"),
    ("http", "context_path", "rest", "http.context_path"),
    ("http", "context_path", "/rest/", "http.context_path"),
    ("http", "max_body_bytes", 0, "http.max_body_bytes"),
    ("http", "scripts_dir", "no/such/dir", "http.scripts_dir"),
    ("auth", "admins", ["admin"], "auth.admins"),
    ("auth", "max_sessions", 0, "auth.max_sessions"),
    ("log", "level", "loud", "log.level"),
])
def test_invalid_values_name_the_key(section, key, value, needle):
    raw = {"xmpp": {"secret": "s"}}
    raw.setdefault(section, {})[key] = value
    assert needle in error_of(raw)


def test_api_keys_as_strings_and_tables():
    cfg = load({**MINIMAL, "auth": {"api_keys": [
        "plain",
        {"key": "limited", "domains": ["api.example.com"], "paths": ["/rest/stream/.*"]},
        {"key": "one-domain", "domains": "api.example.com"},  # a single string is a list of one
        {"key": "reader", "paths": ["/rest/avatar/.*"], "methods": ["get", "HEAD"]},
    ]}})
    assert cfg.auth.api_keys == (
        ApiKey("plain"),
        ApiKey("limited", ("api.example.com",), ("/rest/stream/.*",)),
        ApiKey("one-domain", ("api.example.com",)),
        ApiKey("reader", (), ("/rest/avatar/.*",), ("GET", "HEAD")),
    )


@pytest.mark.parametrize("entry, needle", [
    ({"key": "k", "paths": ["/rest/(unclosed"]}, "invalid regex"),
    ({"key": "k", "paths": [5]}, "auth.api_keys[0].paths"),
    ({"key": "k", "domains": [None]}, "auth.api_keys[0].domains"),
    ({"key": ""}, "auth.api_keys[0]"),
    ({"domains": ["x"]}, "auth.api_keys[0]"),
    ({"key": "k", "path": ["/x"]}, "'path'"),
    ({"key": "k", "methods": ["GET /x"]}, "auth.api_keys[0].methods"),
    ({"key": "k", "methods": [1]}, "auth.api_keys[0].methods"),
    (5, "auth.api_keys[0]"),
])
def test_bad_api_key_tables_are_named(entry, needle):
    message = error_of({**MINIMAL, "auth": {"api_keys": [entry]}})
    assert needle in message
    assert "auth.api_keys" in message


def test_missing_secret():
    assert "xmpp.secret" in error_of({})


def test_secret_file_is_read_and_stripped(tmp_path):
    (tmp_path / "secret").write_text("from-file\n", encoding="utf-8")
    (tmp_path / "scripts" / "rest").mkdir(parents=True)
    cfg = load({"xmpp": {"secret_file": "secret"}}, base_dir=tmp_path)
    assert cfg.xmpp.secret == "from-file"


def test_secret_and_secret_file_together_are_an_error_naming_both(tmp_path):
    (tmp_path / "secret").write_text("from-file\n", encoding="utf-8")
    message = error_of({"xmpp": {"secret": "inline", "secret_file": str(tmp_path / "secret")}})
    assert "xmpp.secret and xmpp.secret_file are both set" in message
    # the case: the file's secret and the systemd unit's env secret file
    message = error_of({"xmpp": {"secret": "change-me"}}, {"TIGASE_REST_XMPP_SECRET_FILE": str(tmp_path / "secret")})
    assert "both set" in message


def test_an_empty_secret_file_is_an_error(tmp_path):
    (tmp_path / "secret").write_text("\n", encoding="utf-8")
    assert "is empty" in error_of({"xmpp": {"secret_file": str(tmp_path / "secret")}})


def test_an_unknown_environment_variable_is_an_error():
    message = error_of(MINIMAL, {"TIGASE_REST_XMPP_SECERT": "typo"})
    assert "unknown environment variable TIGASE_REST_XMPP_SECERT" in message
    assert load(MINIMAL, {"OTHER_VAR": "x", "TIGASE_RESTLESS": "x"}).xmpp.secret == "s3cret"


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path):
    etc = tmp_path / "etc"
    (etc / "scripts").mkdir(parents=True)
    (etc / "secret").write_text("s", encoding="utf-8")
    path = etc / "config.toml"
    path.write_text('[xmpp]\nsecret_file = "secret"\nc2s_ca_file = "ca.pem"\n'
                    '[http]\nscripts_dir = "scripts"\n[storage]\ndata_dir = "state"\n', encoding="utf-8")
    cfg = config.load(path, env={})
    assert cfg.xmpp.secret == "s" and cfg.xmpp.c2s_ca_file == str(etc / "ca.pem")
    assert cfg.scripts_paths == (etc / "scripts",) and cfg.data_path == etc / "state"


def test_data_dir_defaults_to_systemds_state_directory(tmp_path):
    assert load(MINIMAL, {"STATE_DIRECTORY": "/var/lib/tigase-rest"}).data_path == Path("/var/lib/tigase-rest")
    assert load(MINIMAL, {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}).data_path == Path("/var/lib/a")
    explicit = {"xmpp": {"secret": "s"}, "storage": {"data_dir": str(tmp_path)}}
    assert load(explicit, {"STATE_DIRECTORY": "/var/lib/tigase-rest"}).data_path == tmp_path


def test_scripts_dir_is_a_string_or_a_list_also_from_env(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load({"xmpp": {"secret": "s"}, "http": {"scripts_dir": "a"}}, base_dir=tmp_path).scripts_paths == (tmp_path / "a",)
    cfg = load(MINIMAL, {"TIGASE_REST_HTTP_SCRIPTS_DIR": f"{tmp_path / 'a'},{tmp_path / 'b'}"})
    assert cfg.scripts_paths == (tmp_path / "a", tmp_path / "b")
    assert "http.scripts_dir: no such folder" in error_of({"xmpp": {"secret": "s"}, "http": {"scripts_dir": ["a", "c"]}},
                                                         base_dir=tmp_path)


@pytest.mark.parametrize("proxies, ok", [(["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"], True),
                                         (["localhost"], False), (["10.0.0.0/33"], False)])
def test_trusted_proxies_are_addresses_or_cidrs(proxies, ok):
    raw = {"xmpp": {"secret": "s"}, "http": {"trusted_proxies": proxies}}
    if ok:
        assert load(raw).http.trusted_proxies == tuple(proxies)
    else:
        assert "http.trusted_proxies" in error_of(raw)


def test_tls_cert_and_key_go_together():
    assert "http.tls_cert and http.tls_key" in error_of({"xmpp": {"secret": "s"}, "http": {"tls_cert": "c.pem"}})


def test_check_files_names_an_unreadable_ca_file_and_a_data_dir_that_cannot_be_written(tmp_path):
    cfg = load({"xmpp": {"secret": "s", "c2s_ca_file": str(tmp_path / "missing.pem")},
                "storage": {"data_dir": str(tmp_path / "data")}})
    with pytest.raises(ConfigError, match=r"xmpp.c2s_ca_file: cannot read .*missing.pem"):
        config.check_files(cfg)
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    cfg = load({"xmpp": {"secret": "s"}, "storage": {"data_dir": str(blocker / "data")}})
    with pytest.raises(ConfigError, match=r"storage.data_dir: .* is not writable"):
        config.check_files(cfg)
    cfg = load({"xmpp": {"secret": "s"}, "storage": {"data_dir": str(tmp_path / "new" / "data")}})
    config.check_files(cfg)
    assert not (tmp_path / "new").exists()  # nothing created by a check


def test_unreadable_secret_file_is_named(tmp_path):
    message = error_of({"xmpp": {"secret_file": str(tmp_path / "missing")}})
    assert "xmpp.secret_file" in message and "missing" in message


def test_load_reads_the_example_which_sets_no_secret():
    cfg = config.load(REPO / "etc" / "config.example.toml", env={"TIGASE_REST_XMPP_SECRET": "s"})
    assert cfg.xmpp.component_jid == "http.example.com"
    assert cfg.scripts_paths == () and cfg.http.builtin_scripts
    assert cfg.auth.api_keys == (ApiKey("change-me-too"),)
    assert "xmpp.secret is required" in str(pytest.raises(ConfigError, config.load, REPO / "etc" / "config.example.toml",
                                                                 env={}).value)


def test_load_env_overrides_the_file():
    cfg = config.load(REPO / "etc" / "config.example.toml", env={"TIGASE_REST_XMPP_SECRET": "env"})
    assert cfg.xmpp.secret == "env"


def test_load_a_config_that_is_not_utf8_or_not_a_file(tmp_path):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[xmpp]\nsecret = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8"):
        config.load(latin1, env={})
    with pytest.raises(ConfigError, match="is a folder"):
        config.load(tmp_path, env={})


def test_load_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[xmpp\nsecret = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(bad, env={})


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TIGASE_REST_")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tigase_rest", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)


def test_cli_check_config_accepts_the_example_with_a_secret_from_env(tmp_path):
    result = run_cli("--check-config", "etc/config.example.toml",
                     env={"TIGASE_REST_XMPP_SECRET": "s", "STATE_DIRECTORY": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_cli_prints_the_example_config():
    result = run_cli("--print-example-config")
    assert result.returncode == 0
    assert result.stdout == (REPO / "etc" / "config.example.toml").read_text(encoding="utf-8")


def one_line_error(*args: str, env: dict | None = None) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("setup, needle", [
    ({"xmpp": 'secret = "s"\nc2s_ca_file = "missing-ca.pem"'}, "xmpp.c2s_ca_file: cannot read"),
    ({"xmpp": 'secret = "s"', "storage": 'data_dir = "/proc/no-such/data"'}, "storage.data_dir"),
    ({"xmpp": 'secret = "change-me"'}, "xmpp.secret and xmpp.secret_file are both set"),
    ({"xmpp": 'secret = "s"', "http": 'scripts_dir = "broken"'}, "broken/x/bad.py does not load: SyntaxError"),
    ({"xmpp": 'secret = "s"\nsecert = "typo"'}, "unknown key xmpp.secert"),
])
def test_cli_check_config_catches_each_broken_setup_with_one_line(tmp_path, setup, needle):
    (tmp_path / "broken" / "x").mkdir(parents=True)
    (tmp_path / "broken" / "x" / "bad.py").write_text("def (:\n", encoding="utf-8")
    (tmp_path / "secret").write_text("s\n", encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text("".join(f"[{section}]\n{body}\n" for section, body in setup.items()), encoding="utf-8")
    env = {"STATE_DIRECTORY": str(tmp_path / "state")}
    if "change-me" in setup["xmpp"]:
        env["TIGASE_REST_XMPP_SECRET_FILE"] = str(tmp_path / "secret")
    line = one_line_error("--check-config", str(path), env=env)
    assert needle in line and str(path) in line


def test_cli_unknown_env_and_unreadable_config_are_one_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[xmpp]\nsecret = "s"\n', encoding="utf-8")
    assert "TIGASE_REST_XMPP_PORTT" in one_line_error("--check-config", str(path), env={"TIGASE_REST_XMPP_PORTT": "1"})
    path.write_bytes(b'[xmpp]\nsecret = "\xff"\n')
    assert "not UTF-8" in one_line_error("--check-config", str(path))


def test_cli_a_start_that_cannot_write_data_dir_is_one_line_not_a_traceback(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[xmpp]\nsecret = "s"\n[storage]\ndata_dir = "/proc/no-such/data"\n', encoding="utf-8")
    assert "storage.data_dir" in one_line_error("--config", str(path))


def test_cli_check_config_names_the_broken_key(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (tmp_path / "scripts" / "rest").mkdir(parents=True)
    broken = etc / "config.toml"
    broken.write_text('[xmpp]\nsecret = "s"\nport = "not-a-port"\n', encoding="utf-8")
    result = run_cli("--check-config", str(broken))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "xmpp.port" in lines[0]
    assert "Traceback" not in result.stderr


# --- scaling out: [storage] url, [xmpp] deployment ----------------------------------------------


def test_storage_url_is_sqlite_by_default_or_postgresql():
    assert load({"xmpp": {"secret": "s"}}).storage.url == "sqlite"
    cfg = load({"xmpp": {"secret": "s"}}, env={"TIGASE_REST_STORAGE_URL": "postgresql://rest:pw@db/rest"})
    assert cfg.storage.is_postgresql
    assert "not 'mysql://rest:***@db/rest'" in error_of({"xmpp": {"secret": "s"}, "storage": {"url": "mysql://rest:pw@db/rest"}})


def test_a_postgresql_url_without_its_driver_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name, *a))
    message = error_of({"xmpp": {"secret": "s"}, "storage": {"url": "postgresql://db/rest"}})
    assert "pip install 'tigase-rest[postgresql]'" in message


def test_a_deployment_includes_this_instance_and_shares_a_database():
    two = ["http1.localhost", "http2.localhost"]
    assert "is not among them" in error_of({"xmpp": {"secret": "s", "deployment": two}})
    one = {"secret": "s", "component_jid": "http1.localhost"}
    assert "set storage.url" in error_of({"xmpp": {**one, "deployment": two}})
    cfg = load({"xmpp": {**one, "deployment": two}, "storage": {"url": "postgresql://db/rest"}})
    assert cfg.xmpp.deployment == tuple(two)
    assert load({"xmpp": {**one, "deployment": ["http1.localhost"]}}).xmpp.deployment == ("http1.localhost",)
    assert "not a component JID" in error_of({"xmpp": {**one, "deployment": ["bot@http1.localhost"]}})


def test_the_database_password_is_redacted():
    from tigase_rest.app import secrets_of

    cfg = load({"xmpp": {"secret": "s"}, "storage": {"url": "postgresql://rest:p%40ss@db:5432/rest"}})
    assert {"p%40ss", "p@ss"} <= set(secrets_of(cfg))
    assert config.redacted_url(cfg.storage.url) == "postgresql://rest:***@db:5432/rest"
