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
    assert cfg.scripts_path == REPO / "scripts" / "rest"


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


def test_secret_beats_secret_file(tmp_path):
    cfg = load({"xmpp": {"secret": "inline", "secret_file": str(tmp_path / "missing")}})
    assert cfg.xmpp.secret == "inline"


def test_unreadable_secret_file_is_named(tmp_path):
    message = error_of({"xmpp": {"secret_file": str(tmp_path / "missing")}})
    assert "xmpp.secret_file" in message and "missing" in message


def test_load_reads_toml_and_resolves_paths_from_the_project_root():
    cfg = config.load(REPO / "etc" / "config.example.toml", env={})
    assert cfg.xmpp.component_jid == "http.example.com"
    assert cfg.scripts_path == REPO / "scripts" / "rest"
    assert cfg.auth.api_keys == (ApiKey("change-me-too"),)


def test_load_env_overrides_the_file():
    cfg = config.load(REPO / "etc" / "config.example.toml", env={"TIGASE_REST_XMPP_SECRET": "env"})
    assert cfg.xmpp.secret == "env"


def test_load_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[xmpp\nsecret = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(bad, env={})


# --- the CLI ----------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIGASE_REST_")}
    return subprocess.run([sys.executable, "-m", "tigase_rest", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)


def test_cli_check_config_accepts_the_example():
    result = run_cli("--check-config", "etc/config.example.toml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


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
