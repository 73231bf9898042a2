"""How a handler's exec method is called: service, callback, [user], [request], [content], *groups."""

from __future__ import annotations

import re

import pytest

from tigase_rest.handlers import Handler, build_args, signature_of

SERVICE, CALLBACK, REQUEST, CONTENT = object(), object(), object(), {"command": {"node": "n"}}


def call(handler: Handler, method: str, regex: str, path: str, *, user=None, has_body=False, content=None):
    """What the exec method receives for ``path``, the way the server calls it."""
    pattern = re.compile(regex)
    groups = pattern.fullmatch(path).groups()
    sig = signature_of(handler, method, pattern.groups)
    args = build_args(sig, service=SERVICE, callback=CALLBACK, with_user=handler.required_role is not None,
                      user=user, request=REQUEST, has_body=has_body, content=content, groups=groups)
    return handler.exec_for(method)(*args)


class Plain(Handler):
    def exec_get(self, service, callback):
        return (service, callback)


def test_service_and_callback_only():
    assert call(Plain(), "GET", "/x", "/x") == (SERVICE, CALLBACK)


class Groups(Handler):
    def exec_get(self, service, callback, local, domain):
        return (local, domain)


def test_groups_are_spread_as_separate_arguments():
    assert call(Groups(), "GET", r"/(?:([^@/]+)@)?([^@/]+)", "/alice@example.com") == ("alice", "example.com")


def test_unmatched_optional_group_is_none():
    assert call(Groups(), "GET", r"/(?:([^@/]+)@)?([^@/]+)", "/example.com") == (None, "example.com")


class WithUser(Handler):
    required_role = "user"

    def exec_get(self, service, callback, user, jid):
        return (user, jid)


def test_user_comes_after_callback_when_a_role_is_required():
    assert call(WithUser(), "GET", r"/(.+)", "/bob@example.com", user="alice@example.com") == \
        ("alice@example.com", "bob@example.com")


def test_user_is_none_when_an_api_key_replaced_the_login():
    assert call(WithUser(), "GET", r"/(.+)", "/bob@example.com", user=None) == (None, "bob@example.com")


class WithRequest(Handler):
    required_role = "admin"

    def exec_post(self, service, callback, user, request, to):
        return (user, request, to)


def test_request_is_passed_when_the_next_parameter_is_named_request():
    # Stream's signature: the raw request, no content argument, then the groups.
    assert call(WithRequest(), "POST", r"(?:/(.*))?", "/a@b", user="admin@b", has_body=True, content=CONTENT) == \
        ("admin@b", REQUEST, "a@b")


class NoRole(Handler):
    def exec_post(self, service, callback, request, token):
        return (request, token)


def test_request_without_a_role():
    assert call(NoRole(), "POST", r"/(\w+)", "/t0k3n") == (REQUEST, "t0k3n")


class WithContent(Handler):
    required_role = "user"

    def exec_post(self, service, callback, user, content, local, domain):
        return (user, content, local, domain)


def test_content_comes_before_the_groups():
    assert call(WithContent(), "POST", r"/(?:([^@/]+)@)?([^@/]+)", "/sess-man@example.com",
                user="admin@example.com", has_body=True, content=CONTENT) == \
        ("admin@example.com", CONTENT, "sess-man", "example.com")


def test_post_without_a_body_does_not_shift_the_groups():
    # Deviation: Tigase drops the content argument and the closure fails; we pass None.
    assert call(WithContent(), "POST", r"/(?:([^@/]+)@)?([^@/]+)", "/sess-man@example.com",
                user="admin@example.com", has_body=False) == ("admin@example.com", None, "sess-man", "example.com")


class NoContentSlot(Handler):
    def exec_get(self, service, callback, jid):
        return (jid,)


def test_a_body_is_not_passed_to_a_method_without_a_slot_for_it():
    assert call(NoContentSlot(), "GET", r"/(.+)", "/a@b", has_body=True, content=CONTENT) == ("a@b",)


class VarArgs(Handler):
    def exec_post(self, service, callback, *args):
        return args


def test_varargs_follow_tigase_content_only_when_there_is_a_body():
    assert call(VarArgs(), "POST", r"/(\w+)/(\w+)", "/a/b", has_body=True, content=CONTENT) == (CONTENT, "a", "b")
    assert call(VarArgs(), "POST", r"/(\w+)/(\w+)", "/a/b", has_body=False) == ("a", "b")


class AsyncHandler(Handler):
    async def exec_delete(self, service, callback, jid):
        return jid


async def test_async_methods_get_the_same_arguments():
    assert await call(AsyncHandler(), "DELETE", r"/(.+)", "/x@y") == "x@y"


def test_methods_lists_only_what_the_handler_implements():
    class GetPut(Handler):
        def exec_get(self, service, callback):
            pass

        def exec_put(self, service, callback, content):
            pass

    handler = GetPut()
    assert handler.methods() == ["GET", "PUT"]
    assert handler.exec_for("POST") is None
    assert handler.exec_for("PATCH") is None
    assert handler.exec_for("get") is None  # methods are upper case, as aiohttp gives them


def test_signature_is_computed_from_the_declaration():
    sig = signature_of(WithContent(), "POST", 2)
    assert (sig.wants_request, sig.content_slot, sig.varargs) == (False, True, False)
    sig = signature_of(WithRequest(), "POST", 1)
    assert (sig.wants_request, sig.content_slot, sig.varargs) == (True, False, False)
    sig = signature_of(VarArgs(), "POST", 2)
    assert (sig.wants_request, sig.content_slot, sig.varargs) == (False, False, True)


@pytest.mark.parametrize("attr, default", [
    ("regex", ""), ("required_role", None), ("decode_content", True), ("api_key", True),
    ("api_key_replaces_login", False), ("description", None),
])
def test_handler_defaults(attr, default):
    assert getattr(Handler, attr) == default
