"""Schemathesis hooks for fuzzing a running Bipupu server: `SCHEMATHESIS_HOOKS=tests.fuzz_hooks st run …`.

tests/test_fuzz.py starts a server, makes the accounts below and runs `schemathesis run` with these
hooks; the README shows the same run made longer. What the hooks add, and why:

- Authentication: every request carries the fuzzing user's access token, except a logout, which
  gets a fresh login of another user so a logout (even `all: true`) cannot sign the run out.
- Steering: a generated id, password or username is sometimes swapped for one that exists, so the
  paths behind a 404 or a 401 are fuzzed too. Only a value that fits its schema is swapped, for one
  that fits as well, so a case generated to break the document still breaks it the same way.
- Rules in words: some rules cannot be said in JSON Schema (UTF-8 bytes, Unicode letter classes
  and NFKC, "not your own id"); the document states them in the field's description. A case
  generated to *fit* the document is made to keep those rules too, through the server's own
  rule functions, so that `positive_data_acceptance` checks what the document can say and not
  what it cannot. Nothing else of the case changes; cases meant to break the document are left alone.
- One more check, `error_code_documented`: an error answer's code must be one the operation lists
  for that status in the document (or one any request may meet).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable

import requests
import schemathesis
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bipupu_server.identity import check_avatar_url, check_cosmic_profile, check_username
from bipupu_server.passwords import check_password
from bipupu_server.errors import AppError
from bipupu_server.web.openapi import ANYWHERE

CONTEXT_VARIABLE = "BIPUPU_FUZZ_CONTEXT"


def load_context() -> dict[str, Any] | None:
    """What test_fuzz.py wrote about the server under test (its URL, the accounts), if it is set."""
    path = os.environ.get(CONTEXT_VARIABLE)
    if not path:
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


CONTEXT = load_context()


def login(username: str, password: str | None = None) -> dict[str, Any]:
    assert CONTEXT is not None
    resp = requests.post(f"{CONTEXT['url']}/auth/login",
                         json={"username": username, "password": password or CONTEXT["password"]}, timeout=10)
    resp.raise_for_status()
    return resp.json()


# Authentication ------------------------------------------------------------------------------------

if CONTEXT is not None:
    @schemathesis.auth()
    class BearerAuth:
        """The fuzzing user's token for everything; a fresh login of the leaver for each logout; the admin's
        for a broadcast."""

        def get(self, case, ctx):
            return login(CONTEXT["fuzzer"]["username"])["access_token"]

        def set(self, case, data, ctx):
            token = data
            if case.operation.label == "POST /auth/logout":
                token = login(CONTEXT["leaver"]["username"])["access_token"]
            elif case.operation.label == "POST /services/{service_id}/broadcast":  # admins only
                token = login("admin", CONTEXT["admin_password"])["access_token"]
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


# Steering --------------------------------------------------------------------------------------

def body_field_schemas(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each request-body field with every schema the document gives it (username is in two bodies)."""
    fields: dict[str, list[dict[str, Any]]] = {}
    for operations in document["paths"].values():
        for operation in operations.values():
            ref = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ref:
                body = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
                for field, schema in body.get("properties", {}).items():
                    fields.setdefault(field, []).append(schema)
    return fields


def steering(document: dict[str, Any], body: dict[str, st.SearchStrategy],
             path: dict[str, st.SearchStrategy]) -> tuple[Callable, Callable]:
    """flatmap_body and flatmap_path_parameters hooks that sometimes swap a value for a known one."""
    schemas = body_field_schemas(document)
    root = {"components": document["components"]}
    validators = {field: [Draft202012Validator({**schema, **root}) for schema in schemas.get(field, [])]
                  for field in body}

    def swap(values: dict[str, Any], known: dict[str, st.SearchStrategy],
             fits: Callable[[str, Any], bool]) -> st.SearchStrategy:
        options = {name: st.one_of(st.just(value), known[name]) for name, value in values.items()
                   if name in known and fits(name, value)}
        if not options:
            return st.just(values)
        return st.fixed_dictionaries(options).map(lambda new: {**values, **new})

    def flatmap_body(context, value):
        if not isinstance(value, dict):
            return st.just(value)
        return swap(value, body, lambda name, item: all(v.is_valid(item) for v in validators[name]))

    def flatmap_path_parameters(context, value):
        if not value:
            return st.just(value)
        return swap(value, path, lambda name, item: isinstance(item, str))  # the document types them all string

    return flatmap_body, flatmap_path_parameters


def known_values(context: dict[str, Any]) -> tuple[dict[str, st.SearchStrategy], dict[str, st.SearchStrategy]]:
    users = [context[name]["bipupu_id"] for name in ("fuzzer", "peer", "leaver")] + ["00000001"]
    others = st.sampled_from(users[1:])
    body = {
        "receiver_id": st.sampled_from([*users[1:], "cosmic.fortune", "bipupu.notice"]),
        "contact_id": others, "blocked_id": others,
        "username": st.one_of(st.sampled_from(["peer", "Leaver"]), st.from_regex(r"\Anew[a-z0-9_.-]{1,20}\Z")),
        "password": st.just(context["password"]), "old_password": st.just(context["password"]),
        "new_password": st.just(context["password"]),
        "refresh_token": st.just(context["peer"]["refresh_token"]),
    }
    path = {"contact_id": others, "blocked_id": others, "bipupu_id": st.sampled_from(users),
            "message_id": st.sampled_from(context["cards"]),
            "service_id": st.sampled_from(["bipupu.notice", "cosmic.fortune"])}
    return body, path


if CONTEXT is not None:
    @schemathesis.hook
    def after_load_schema(context, schema) -> None:
        body, path = known_values(CONTEXT)
        for hook in steering(schema.raw_schema, body, path):
            schema.hook(hook)


# Rules in words --------------------------------------------------------------------------------

def keeps(rule: Callable[[Any], Any], value: Any) -> bool:
    try:
        rule(value)
    except AppError:
        return False
    return True


def fresh_username() -> str:
    return f"new{uuid.uuid4().hex[:12]}"


# field -> (the server's rule, what stands in for a value that breaks it)
WORDED_RULES: dict[str, tuple[Callable[[Any], Any], Callable[[], Any]]] = {
    "username": (check_username, fresh_username),
    "password": (check_password, lambda: CONTEXT["password"]),
    "new_password": (check_password, lambda: CONTEXT["password"]),
    "avatar_url": (lambda v: v is None or check_avatar_url(v), lambda: "/static/avatar.png"),
    "cosmic_profile": (check_cosmic_profile, dict),
}
SELF_FIELDS = ("receiver_id", "contact_id", "blocked_id")


def keep_worded_rules(case) -> None:
    """Make a case generated to fit the document keep the rules the document states in words."""
    body = case.body
    if not isinstance(body, dict) or case.operation.label == "POST /auth/login":
        return  # login takes any text: a wrong one is a 401, which the checks accept
    for field, (rule, stand_in) in WORDED_RULES.items():
        if field in body and not keeps(rule, body[field]):
            body[field] = stand_in()
    for field in SELF_FIELDS:  # "not your own": 422 self_reference / self_message
        if body.get(field) == CONTEXT["fuzzer"]["bipupu_id"]:
            body[field] = CONTEXT["peer"]["bipupu_id"]
    if "client_msg_id" in body:  # a key used before with another card is 422 idempotency_key_reused
        body["client_msg_id"] = uuid.uuid4().hex
    if "old_password" in body:  # "your current password" (a wrong one is 403); the fuzzer keeps its password,
        body["old_password"] = body["new_password"] = CONTEXT["password"]  # so the run never locks itself out


def is_positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


if CONTEXT is not None:
    @schemathesis.hook
    def before_call(context, case, kwargs) -> None:
        if is_positive(case):
            keep_worded_rules(case)  # in place: schemathesis revalidates the case's metadata after this hook


# What was answered, for test_fuzz.py to see the run reached past the refusals --------------------------

if CONTEXT is not None and CONTEXT.get("answers"):
    @schemathesis.hook
    def after_call(context, case, response) -> None:
        with open(CONTEXT["answers"], "a", encoding="utf-8") as file:
            file.write(json.dumps([case.operation.label, response.status_code, is_positive(case)]) + "\n")


# The extra check -------------------------------------------------------------------------------

@schemathesis.check
def error_code_documented(ctx, response, case) -> bool | None:
    """An error's code is one its operation lists for that status (x-error-codes), or one any request may meet."""
    if response.status_code < 400:
        return None
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None  # the body's shape is response_schema_conformance's to judge
    answer = case.operation.definition.raw.get("responses", {}).get(str(response.status_code), {})
    listed = answer.get("x-error-codes", [])
    if code not in listed and code not in ANYWHERE:
        raise AssertionError(f"{case.operation.label} answered {response.status_code} {code!r}, which its document "
                             f"does not list (it lists {listed})")
    return None
