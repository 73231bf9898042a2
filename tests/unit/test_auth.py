"""API keys (Tigase's ApiKeyItem rules), Basic credentials parsing, the failed-login limiter, and
SCRAM against the RFC examples."""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import make_mocked_request

from tigase_rest.config import ApiKey, AuthConfig
from tigase_rest.errors import HttpError
from tigase_rest.http import auth
from tigase_rest.http.auth import ApiKeyChecker, basic_credentials, caller_jid
from tigase_rest.xmpp import sessions
from tigase_rest.xmpp.sessions import FailureLimiter


def request(path="/rest/stream/", headers=None, host="api.example.com"):
    return make_mocked_request("POST", path, headers={"Host": host, **(headers or {})})


def checker(*keys, open_access=False):
    return ApiKeyChecker(AuthConfig(api_keys=tuple(k if isinstance(k, ApiKey) else ApiKey(k) for k in keys),
                                    open_access=open_access))


def refused(check, req) -> HttpError:
    with pytest.raises(HttpError) as e:
        check.check(req)
    assert e.value.status == 403
    return e.value


# --- API keys ---------------------------------------------------------------------------------


def test_key_in_the_header():
    assert checker("k1", "k2").check(request(headers={"Api-Key": "k2"})) is True


def test_key_in_the_query_parameter():
    assert checker("k1").check(request("/rest/stream/?api-key=k1")) is True


def test_api_key_with_underscore_is_not_the_parameter():
    # Tigase issue #118: the parameter is api-key, not api_key.
    assert "Missing" in refused(checker("k1"), request("/rest/stream/?api_key=k1")).reason


def test_missing_key_is_403_with_tigase_like_message():
    assert refused(checker("k1"), request()).reason.startswith("Missing required 'Api-Key' header")


def test_no_keys_configured_refuses_everything():
    refused(checker(), request(headers={"Api-Key": "anything"}))
    refused(checker(), request())


@pytest.mark.parametrize("given", ["K1", "k1 ", "k", "k1k1", ""])
def test_wrong_key_is_403_naming_the_path(given):
    error = refused(checker("k1"), request("/rest/stream/x", headers={"Api-Key": given}))
    if given:
        assert error.reason == "Provided Api-Key is not authorized to access /rest/stream/x"


def test_every_key_is_compared_even_after_a_match(monkeypatch):
    # Constant time: the loop does not stop at the matching key, so timing does not tell which key matched.
    compared = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert checker("first", "second", "third").check(request(headers={"Api-Key": "first"})) is True
    assert compared == [b"first", b"second", b"third"]


def test_undecodable_key_in_the_query_is_refused():
    # Invalid UTF-8 percent-escapes decode to U+FFFD; such a key never matches. (Raw undecodable
    # header bytes are tested through HTTP in tests/http: a mocked request cannot carry them.)
    error = refused(checker("k1"), make_mocked_request("GET", "/rest/x?api-key=%FF", headers={"Host": "h"}))
    assert error.reason.startswith("Provided Api-Key")


def test_key_limited_to_domains_by_host():
    check = checker(ApiKey("k", domains=("api.example.com", "Other.Example.com")))
    assert check.check(request(headers={"Api-Key": "k"}, host="api.example.com")) is True
    assert check.check(request(headers={"Api-Key": "k"}, host="API.example.com:8080")) is True
    assert check.check(request(headers={"Api-Key": "k"}, host="other.example.com")) is True
    refused(check, request(headers={"Api-Key": "k"}, host="evil.example.com"))
    refused(check, request(headers={"Api-Key": "k"}, host="api.example.com.evil.net"))


def test_ipv6_host_literals():
    check = checker(ApiKey("k", domains=("[::1]",)))
    assert check.check(request(headers={"Api-Key": "k"}, host="[::1]:8080")) is True
    assert check.check(request(headers={"Api-Key": "k"}, host="[::1]")) is True
    refused(check, request(headers={"Api-Key": "k"}, host="[::2]"))


def test_key_limited_to_paths_by_full_match_including_the_context():
    check = checker(ApiKey("k", paths=("/rest/stream/.*", "/rest/adhoc/sess-man@example.com")))
    assert check.check(request("/rest/stream/bob@example.com", headers={"Api-Key": "k"})) is True
    assert check.check(request("/rest/adhoc/sess-man@example.com", headers={"Api-Key": "k"})) is True
    refused(check, request("/rest/adhoc/sess-man@example.com/more", headers={"Api-Key": "k"}))  # full match
    refused(check, request("/x/rest/stream/y", headers={"Api-Key": "k"}))  # not a search
    refused(check, request("/rest/stream", headers={"Api-Key": "k"}))


def test_domains_and_paths_together():
    check = checker(ApiKey("k", domains=("api.example.com",), paths=("/rest/stream/.*",)))
    assert check.check(request("/rest/stream/x", headers={"Api-Key": "k"})) is True
    refused(check, request("/rest/stream/x", headers={"Api-Key": "k"}, host="other.example.com"))
    refused(check, request("/rest/adhoc/x", headers={"Api-Key": "k"}))


def test_open_access_key_is_used_when_there_is_no_key():
    check = checker("k", ApiKey("open_access", paths=("/rest/avatar/.*",)))
    assert check.check(request("/rest/avatar/alice@example.com")) is False  # allowed, but no key given
    refused(check, request("/rest/stream/x"))
    assert check.check(request("/rest/stream/x", headers={"Api-Key": "k"})) is True


def test_open_access_key_name_is_not_itself_a_key():
    check = checker(ApiKey("open_access", paths=("/rest/avatar/.*",)))
    refused(check, request("/rest/stream/x", headers={"Api-Key": "open_access"}))


def test_open_access_key_without_limits_opens_everything_keyless():
    assert checker("open_access").check(request("/rest/anything")) is False


def test_open_access_setting_disables_keys():
    check = checker(open_access=True)
    assert check.check(request()) is False
    assert check.check(request(headers={"Api-Key": "whatever"})) is False


# --- Basic credentials --------------------------------------------------------------------------


def basic(value: str) -> dict:
    return {"Authorization": value}


def encoded(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_no_authorization_header_is_none():
    assert basic_credentials(request()) is None


def test_basic_credentials_are_parsed():
    assert basic_credentials(request(headers=basic(encoded("alice@example.com:pa:ss wörd")))) == \
        ("alice@example.com", "pa:ss wörd")


def test_scheme_is_case_insensitive():
    assert basic_credentials(request(headers=basic("basic " + encoded("a@b:c").split()[1]))) == ("a@b", "c")


@pytest.mark.parametrize("header", [
    "Bearer abc.def",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":password").decode(),
    "Basic " + base64.b64encode(b"alice@example.com:").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
    "Basic \u00fc\u00e9",  # not ASCII at all
    "Basic",
])
def test_bad_authorization_is_401_with_a_challenge(header):
    with pytest.raises(HttpError) as e:
        basic_credentials(request(headers=basic(header)))
    assert e.value.status == 401
    assert e.value.headers["WWW-Authenticate"].startswith('Basic realm="TigasePlain"')


@pytest.mark.parametrize("user", ["alice", "alice@example.com/phone", "@example.com", "a@b@c"])
def test_a_user_name_that_is_not_a_bare_jid_is_401(user):
    with pytest.raises(HttpError) as e:
        caller_jid(user)
    assert e.value.status == 401
    assert "WWW-Authenticate" in e.value.headers


def test_user_name_is_normalised():
    assert str(caller_jid("Alice@Example.COM")) == "alice@example.com"


# --- failed-login limiter -----------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now[0])
    return now


def test_limiter_allows_up_to_the_threshold(clock):
    limiter = FailureLimiter(max_failures=3, window=60)
    for _ in range(2):
        limiter.record("jid:a@b")
    assert limiter.retry_after("jid:a@b") == 0
    limiter.record("jid:a@b")
    assert limiter.retry_after("jid:a@b") == 60
    assert limiter.retry_after("jid:other@b") == 0


def test_limiter_window_expires(clock):
    limiter = FailureLimiter(max_failures=2, window=60)
    limiter.record("k")
    clock[0] += 30
    limiter.record("k")
    assert limiter.retry_after("k") == pytest.approx(30)  # until the first failure leaves the window
    clock[0] += 30
    assert limiter.retry_after("k") == 0  # one failure left in the window
    clock[0] += 30
    assert limiter.retry_after("k") == 0
    limiter.record("k")
    assert limiter.retry_after("k") == 0  # the old failures are gone: one more is allowed


def test_limiter_clear_forgets_a_key(clock):
    limiter = FailureLimiter(max_failures=1, window=60)
    limiter.record("k")
    assert limiter.retry_after("k") > 0
    limiter.clear("k")
    assert limiter.retry_after("k") == 0


def test_limiter_keys_are_bounded(clock):
    limiter = FailureLimiter(max_failures=1, window=60, max_keys=3)
    for key in ("a", "b", "c", "d"):
        limiter.record(key)
    assert len(limiter._failures) == 3
    assert limiter.retry_after("a") == 0  # the oldest key was dropped
    assert all(limiter.retry_after(k) > 0 for k in ("b", "c", "d"))


def test_limiter_memory_per_key_is_bounded(clock):
    limiter = FailureLimiter(max_failures=3, window=60)
    for _ in range(1000):
        limiter.record("k")
    assert len(limiter._failures["k"]) == 3


def test_limiter_reconfigured_by_a_reload_keeps_the_failures_counted(clock):
    limiter = FailureLimiter(max_failures=3, window=60)
    limiter.record("k")
    limiter.record("k")
    assert limiter.retry_after("k") == 0
    limiter.reconfigure(max_failures=2, window=10)
    assert limiter.retry_after("k") == pytest.approx(10)  # now at the lower limit, with the new window
    limiter.reconfigure(max_failures=5, window=10)
    for _ in range(2):
        limiter.record("k")
    assert limiter.retry_after("k") == 0  # 4 of 5
    limiter.record("k")
    assert limiter.retry_after("k") > 0


def test_pool_apply_changes_the_login_limits():
    from dataclasses import replace

    from tigase_rest.config import from_dict

    config = from_dict({"xmpp": {"secret": "s", "component_jid": "http.example.com", "domain": "example.com"},
                        "auth": {"max_failures": 5, "failure_window": 60}}, {})
    pool = sessions.CallerPool(config)
    pool.apply(replace(config, auth=replace(config.auth, max_failures=2, failure_window=30)))
    assert pool.config.auth.max_failures == 2
    for limiter in (pool.jid_failures, pool.addr_failures):
        assert (limiter.max_failures, limiter.window) == (2, 30)


# --- keys limited by method --------------------------------------------------------------------


def test_key_limited_to_methods():
    check = checker(ApiKey("k", paths=("/rest/avatar/.*",), methods=("GET",)))
    get = make_mocked_request("GET", "/rest/avatar/a@example.com", headers={"Host": "h", "Api-Key": "k"})
    put = make_mocked_request("PUT", "/rest/avatar/a@example.com", headers={"Host": "h", "Api-Key": "k"})
    assert check.check(get) is True
    error = refused(check, put)
    assert error.reason == "Provided Api-Key is not authorized to use PUT on /rest/avatar/a@example.com (only GET)"


def test_open_access_key_limited_to_methods():
    check = checker(ApiKey("open_access", methods=("GET",)), "k")
    assert check.check(make_mocked_request("GET", "/rest/health", headers={"Host": "h"})) is False
    assert "Missing" in refused(check, make_mocked_request("POST", "/rest/stream/", headers={"Host": "h"})).reason


@pytest.mark.parametrize("target, host, allowed", [
    ("http://api.example.com/rest/stream/x", "evil.example.com", True),  # the target's host counts...
    ("http://evil.example.com/rest/stream/x", "api.example.com", False),  # ...not the Host header
    ("http://user@API.example.com:8080/rest/stream/x?y=1", "evil.example.com", True),
    ("/rest/stream/x", "api.example.com", True),
])
def test_the_host_of_an_absolute_form_target_replaces_the_host_header(target, host, allowed):
    from unittest import mock

    check = checker(ApiKey("k", domains=("api.example.com",)))
    req = make_mocked_request("POST", "/rest/stream/x", headers={"Host": host, "Api-Key": "k"})
    with mock.patch.object(type(req), "raw_path", new_callable=mock.PropertyMock, return_value=target):
        if allowed:
            assert check.check(req) is True
        else:
            refused(check, req)
