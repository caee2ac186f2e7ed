"""GET /openapi.json: the document matches the router, is self-consistent, and real answers fit it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from bipupu_server.web import openapi as openapi_module
from bipupu_server.web import shapes
from tests.conftest import PASSWORD, bearer, register

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


# JSON Schema 2020-12, as a validator outside the project reads the document ------------------------

DOCUMENT_URI = "urn:bipupu:openapi.json"  # the document's own "#/..." refs resolve against it


def registry_of(document: dict[str, Any]) -> Registry:
    """The document as the one resource its refs point into (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    return Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))


def pointer(*keys: str, under: str = "#") -> str:
    """The local ref ("#/a/b") of the node at these keys below `under`, each escaped for a JSON pointer and a URI."""
    return under + "".join("/" + quote(key.replace("~", "~0").replace("/", "~1"), safe="~") for key in keys)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """What a local "$ref" ("#/a/b") of the document points at; Unresolvable when it leads nowhere."""
    assert ref.startswith("#/"), f"$ref {ref!r} is not local to the document"
    return registry_of(document).resolver(DOCUMENT_URI).lookup(ref).contents


def schema_errors(document: dict[str, Any], ref: str, value: Any) -> list[str]:
    """Every way `value` breaks the document's schema at `ref` (empty when it fits), formats (date-time) too."""
    validator = Draft202012Validator({"$ref": DOCUMENT_URI + ref}, registry=registry_of(document),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{'.'.join(map(str, error.absolute_path)) or '$'}: {error.message}"
            for error in validator.iter_errors(value)]


# Fixtures and helpers ---------------------------------------------------------------------------

@pytest.fixture
async def document(client) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await resp.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in the document."""
    return [(method.upper(), path, operation)
            for path, item in document["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS]


def all_refs(node: Any, where: str = "#") -> list[tuple[str, str]]:
    """(where, target) of every "$ref" anywhere under node."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append((where, value))
            else:
                found += all_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += all_refs(value, f"{where}/{index}")
    return found


def effective_security(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    return operation.get("security", document.get("security", []))


async def assert_documented(document: dict[str, Any], method: str, path: str, resp) -> None:
    """The response's status is documented for that operation and its body fits the documented schema."""
    operation = document["paths"][path][method.lower()]
    status = str(resp.status)
    assert status in operation["responses"], (
        f"{method} {path} answered {status}, documented only {sorted(operation['responses'])}: {await resp.text()}")
    answer, where = operation["responses"][status], pointer("paths", path, method.lower(), "responses", status)
    if "$ref" in answer:
        answer, where = resolve(document, answer["$ref"]), answer["$ref"]
    content = answer.get("content")
    if content is None:
        assert await resp.read() == b"", f"{method} {path} {status} documents no body"
        return
    assert resp.content_type in content, f"{method} {path} {status}: {resp.content_type} not in {sorted(content)}"
    body = await resp.json()
    errors = schema_errors(document, pointer("content", resp.content_type, "schema", under=where), body)
    assert not errors, f"{method} {path} {status} does not fit its schema: {errors}"


# The document against the router ---------------------------------------------------------------

async def test_document_is_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]


async def test_document_describes_exactly_the_routes(client, document):
    # The JSON API; the admin pages (HTML, a sub-application) and the static files are not part of it.
    routed = {(route.method, route.resource.canonical)
              for route in client.server.app.router.routes() if route.method != "HEAD"
              and not route.resource.canonical.startswith(("/admin", "/static"))}
    documented = {(method, path) for method, path, _ in operations(document)}
    not_documented = sorted(routed - documented)
    not_routed = sorted(documented - routed)
    assert not not_documented and not not_routed, (
        f"routes missing from /openapi.json: {not_documented}; documented but not routed: {not_routed}")
    assert len(routed) >= 10


async def test_every_operation_has_an_id_and_a_success(document):
    ids: list[str] = []
    for method, path, operation in operations(document):
        assert isinstance(operation.get("operationId"), str) and operation["operationId"], f"{method} {path}"
        ids.append(operation["operationId"])
        # success is a 2xx, or 101 for the WebSocket upgrade
        assert any(status.startswith("2") or status == "101" for status in operation["responses"]), (
            f"{method} {path} documents no success")
    duplicates = sorted({name for name in ids if ids.count(name) > 1})
    assert not duplicates, f"operationIds used more than once: {duplicates}"


async def test_every_ref_resolves_inside_the_document(document):
    refs = all_refs(document)
    assert refs, "the document has no $ref at all"
    broken = []
    for where, target in refs:
        try:
            resolve(document, target)
        except (Unresolvable, AssertionError):
            broken.append(f"{where} -> {target}")
    assert not broken, f"unresolved $refs: {broken}"


def needs_token(document: dict[str, Any], operation: dict[str, Any]) -> bool:
    """Security is not empty and has no {} alternative (which would make the token optional)."""
    security = effective_security(document, operation)
    return bool(security) and {} not in security


async def test_every_operation_that_needs_a_token_documents_401(document):
    missing = [f"{method} {path}" for method, path, operation in operations(document)
               if needs_token(document, operation) and "401" not in operation["responses"]]
    assert not missing, f"secured operations without a 401 response: {missing}"


async def test_security_schemes_used_are_defined(document):
    schemes = set(document["components"]["securitySchemes"])
    for method, path, operation in operations(document):
        for requirement in effective_security(document, operation):
            assert set(requirement) <= schemes, f"{method} {path} uses {requirement}"


async def test_path_parameters_are_declared(document):
    for method, path, operation in operations(document):
        in_path = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) + document["paths"][path].get("parameters", [])
                    if p.get("in") == "path" and p.get("required") is True}
        assert in_path == declared, f"{method} {path}: path has {in_path}, declares {declared}"


async def test_every_operation_with_a_json_body_documents_its_refusals(document):
    missing = [f"{method} {path} lacks {status}"
               for method, path, operation in operations(document) if "requestBody" in operation
               for status in ("400", "413", "422") if status not in operation["responses"]]
    assert not missing, missing


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/auth/register"),
    ("POST", "/auth/login"),
    ("POST", "/auth/refresh"),
    ("GET", "/health"),
    ("GET", "/openapi.json"),
])
async def test_public_operations_are_documented_as_needing_no_token(document, method, path):
    # An operation without its own "security" inherits the document's global bearer requirement.
    operation = document["paths"][path][method.lower()]
    assert effective_security(document, operation) == [], (
        f"{method} {path} is public but documented with security {effective_security(document, operation)}")


async def test_logout_needs_no_token_in_the_document_and_says_an_access_token_is_used_if_sent(document):
    # [{bearer}, {}] is what generators cannot express: they then send "Bearer " with an empty token.
    operation = document["paths"]["/auth/logout"]["post"]
    assert effective_security(document, operation) == []
    assert "Authorization" in operation["description"]


# Real answers against the document -------------------------------------------------------------

async def test_auth_answers_fit_the_document(client, document):
    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD, "nickname": "Alice"})
    assert resp.status == 201
    await assert_documented(document, "POST", "/auth/register", resp)

    resp = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 200
    await assert_documented(document, "POST", "/auth/login", resp)
    tokens = await resp.json()

    resp = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 200
    await assert_documented(document, "POST", "/auth/refresh", resp)

    resp = await client.post("/auth/login", json={"username": "alice", "password": "wrong password"})
    assert resp.status == 401
    await assert_documented(document, "POST", "/auth/login", resp)

    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 409
    await assert_documented(document, "POST", "/auth/register", resp)

    resp = await client.post("/auth/register", json={"username": "bo", "password": PASSWORD})
    assert resp.status == 422
    await assert_documented(document, "POST", "/auth/register", resp)

    resp = await client.post("/auth/login", data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    await assert_documented(document, "POST", "/auth/login", resp)

    resp = await client.post("/auth/login", data=b'{"username": "' + b"a" * 70_000 + b'"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    await assert_documented(document, "POST", "/auth/login", resp)

    resp = await client.post("/auth/logout", json={"refresh_token": "not-a-token"})
    assert resp.status == 401
    await assert_documented(document, "POST", "/auth/logout", resp)

    resp = await client.post("/auth/logout", headers=bearer(tokens))
    assert resp.status == 204
    await assert_documented(document, "POST", "/auth/logout", resp)


async def test_me_and_user_answers_fit_the_document(client, document, alice_client, bob, logged_in):
    bob_client = await logged_in(bob)

    resp = await alice_client.get("/me")
    assert resp.status == 200
    await assert_documented(document, "GET", "/me", resp)

    resp = await alice_client.put("/me", json={"cosmic_profile": {"zodiac": "狮子座"},
                                               "avatar_url": "/static/a.png"})
    assert resp.status == 200
    await assert_documented(document, "PUT", "/me", resp)

    resp = await alice_client.put("/me", json={"avatar_url": "javascript:alert(1)"})
    assert resp.status == 422
    await assert_documented(document, "PUT", "/me", resp)

    resp = await alice_client.put("/me", json={"bipupu_id": "00000009"})
    assert resp.status == 422
    await assert_documented(document, "PUT", "/me", resp)

    resp = await client.get("/me")
    assert resp.status == 401
    await assert_documented(document, "GET", "/me", resp)

    resp = await bob_client.get("/users/00000002")
    assert resp.status == 200
    await assert_documented(document, "GET", "/users/{bipupu_id}", resp)

    resp = await bob_client.get("/users/00000099")
    assert resp.status == 404
    await assert_documented(document, "GET", "/users/{bipupu_id}", resp)

    resp = await bob_client.get("/users/abc")
    assert resp.status == 404
    await assert_documented(document, "GET", "/users/{bipupu_id}", resp)

    resp = await client.get("/users/00000002")
    assert resp.status == 401
    await assert_documented(document, "GET", "/users/{bipupu_id}", resp)

    resp = await alice_client.put("/me/password",
                                  json={"old_password": "wrong password", "new_password": "new password 1"})
    assert resp.status == 403
    await assert_documented(document, "PUT", "/me/password", resp)

    resp = await alice_client.put("/me/password", json={"old_password": PASSWORD, "new_password": "new password 1"})
    assert resp.status == 204
    await assert_documented(document, "PUT", "/me/password", resp)


async def test_operations_answers_fit_the_document(client, document):
    resp = await client.get("/health")
    assert resp.status == 200
    await assert_documented(document, "GET", "/health", resp)

    resp = await client.get("/openapi.json")
    assert resp.status == 200
    await assert_documented(document, "GET", "/openapi.json", resp)

    resp = await client.get("/ws")  # a plain GET, no Upgrade
    assert resp.status == 400
    await assert_documented(document, "GET", "/ws", resp)


# The checker must be able to say no -----------------------------------------------------

ME = {"bipupu_id": "00000002", "username": "alice", "nickname": "alice", "avatar_url": None, "cosmic_profile": {},
      "privacy": "everyone", "is_admin": False, "created_at": "2026-02-10T16:00:00Z"}


@pytest.mark.parametrize(("schema", "value"), [
    ("Me", {**ME, "id": "0f0e"}),  # additionalProperties false
    ("Me", {name: value for name, value in ME.items() if name != "privacy"}),  # required
    ("Me", {**ME, "is_admin": 0}),  # boolean is not integer
    ("Me", {**ME, "bipupu_id": "2"}),  # pattern
    ("Me", {**ME, "privacy": "nobody"}),  # enum
    ("Me", {**ME, "avatar_url": 5}),  # list of types
    ("Me", {**ME, "created_at": "yesterday"}),  # date-time
    ("Me", [ME]),  # type object
    ("Account", {"bipupu_id": "00000002", "username": "a", "nickname": "a", "access_token": "t",
                 "refresh_token": "r", "token_type": "Bearer", "expires_in": 3600}),  # const
    ("Account", {"bipupu_id": "00000002", "username": "a", "nickname": "a", "access_token": "t",
                 "refresh_token": "r", "token_type": "bearer", "expires_in": 0}),  # minimum
    ("Error", {"error": {"code": "Not Found", "message": "x"}}),  # nested pattern
    ("Error", {"error": {"code": "x"}}),  # nested required
    ("RegisterRequest", {"username": "ab", "password": PASSWORD}),  # minLength
    ("RegisterRequest", {"username": "a" * 33, "password": PASSWORD}),  # maxLength
])
async def test_schema_checker_refuses_what_breaks_the_schema(document, schema, value):
    assert schema_errors(document, f"#/components/schemas/{schema}", value)


async def test_schema_checker_accepts_a_fitting_value(document):
    assert schema_errors(document, "#/components/schemas/Me", ME) == []


# One declaration ----------------------------------------------------------------------------------

async def test_openapi_module_restates_no_limit():
    """Schemas come from web/shapes.py; web/openapi.py itself holds no limit, pattern or choice."""
    source = (Path(openapi_module.__file__)).read_text()
    for keyword in ("pattern", "minLength", "maxLength", "minimum", "maximum", "enum", "multipleOf"):
        assert f'"{keyword}"' not in source, f"web/openapi.py restates a {keyword}"
    assert "RegisterRequest" in openapi_module.document()["components"]["schemas"]


@pytest.mark.parametrize("shape", [*shapes.REQUESTS, *shapes.RESPONSES])
async def test_each_shape_is_the_published_schema(document, shape):
    """The component is exactly what msgspec derives from the class the server decodes with."""
    _, derived = msgspec.json.schema_components([shape], ref_template="#/components/schemas/{name}")
    name = shapes.DOCUMENT_NAMES.get(shape.__name__, shape.__name__)
    assert document["components"]["schemas"][name] == derived[shape.__name__]


async def test_the_message_query_is_published_as_parameters(document):
    parameters = {p["name"]: p for p in document["paths"]["/messages"]["get"]["parameters"]}
    assert set(parameters) == set(shapes.MessageQuery.__struct_fields__)
    assert parameters["limit"]["schema"]["maximum"] == shapes.LIMIT_MAX
    assert all(p["in"] == "query" and p["required"] is False and p["description"] for p in parameters.values())


async def test_document_passes_openapi_spec_validator(document):
    validate(document)  # raises on any fault of OpenAPI 3.1 or of its JSON Schemas


# The document and the server agree, value by value (the findings of issue 11) ----------------------

def request_schema(method: str, path: str) -> str:
    """The local ref of the operation's JSON body schema."""
    return pointer("paths", path, method.lower(), "requestBody", "content", "application/json", "schema")


# (method, path, body, accepted): the document and the server must give the same verdict. Not here:
# passwords of 2 to 7 bytes, which the document allows by its character count and the server
# refuses by its byte count (JSON Schema cannot count bytes; the description states the rule).
AGREEMENT = [
    ("POST", "/auth/register", {"username": "carol", "password": "x"}, False),
    ("POST", "/auth/register", {"username": "carol", "password": "p" * 73}, False),
    ("POST", "/auth/register", {"username": "carol", "password": PASSWORD, "nickname": "   "}, False),
    ("POST", "/auth/register", {"username": "carol", "password": PASSWORD, "nickname": "a\x07b"}, False),
    ("POST", "/auth/register", {"username": "carol", "password": PASSWORD, "nickname": None}, False),
    ("POST", "/auth/register", {"username": "carol", "password": PASSWORD, "nickname": " Carol\t"}, True),
    ("PUT", "/me/password", {"old_password": PASSWORD, "new_password": "1234567\x00"}, False),
    ("PUT", "/me", {"avatar_url": ""}, False),
    ("PUT", "/me", {"avatar_url": "javascript:alert(1)"}, False),
    ("PUT", "/me", {"avatar_url": "//elsewhere/a.png"}, False),
    ("PUT", "/me", {"avatar_url": " /a.png"}, False),
    ("PUT", "/me", {"avatar_url": "/a.png\ufeff"}, False),
    ("PUT", "/me", {"avatar_url": "https://pics.invalid/a.png"}, True),
    ("PUT", "/me", {"avatar_url": None}, True),
    ("PUT", "/me", {"cosmic_profile": None}, False),
    ("PUT", "/me", {"nickname": "\x1cname"}, False),  # a control character to both, never trimmed as space
    ("POST", "/messages", {"receiver_id": "BOB", "content": "x" * 501}, False),
    ("POST", "/messages", {"receiver_id": "BOB", "content": " " + "x" * 500 + "\n"}, True),
    ("POST", "/messages", {"receiver_id": "BOB", "content": " \n\t\u3000"}, False),
    ("POST", "/messages", {"receiver_id": "BOB", "content": "\ufeff"}, False),  # U+FEFF is space to JSON Schema
    ("POST", "/messages", {"receiver_id": "BOB", "content": "hi", "pattern": {"duration_s": 1.0}}, True),
    ("POST", "/messages", {"receiver_id": "BOB", "content": "hi", "pattern": {"duration_s": 1.5}}, False),
    ("POST", "/messages", {"receiver_id": "BOB", "content": "hi", "pattern": {"duration_s": 61}}, False),
    ("POST", "/messages", {"receiver_id": "BOB", "content": "hi", "pattern": None}, False),
    ("POST", "/messages", {"receiver_id": "BOB\n", "content": "hi"}, False),
    ("POST", "/contacts", {"contact_id": "BOB", "alias": "a\x00b"}, False),
    ("POST", "/contacts", {"contact_id": "BOB", "alias": "  "}, False),
    ("POST", "/contacts", {"contact_id": "BOB", "alias": ""}, True),
]


@pytest.mark.parametrize(("method", "path", "body", "accepted"), AGREEMENT,
                         ids=[f"{m} {p} {i}" for i, (m, p, _, _) in enumerate(AGREEMENT)])
async def test_document_and_server_give_the_same_verdict(client, document, method, path, body, accepted):
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    body = {name: bob["bipupu_id"] if value == "BOB" else value.replace("BOB", bob["bipupu_id"])
            if isinstance(value, str) and value.startswith("BOB") else value for name, value in body.items()}
    errors = schema_errors(document, request_schema(method, path), body)
    assert (not errors) is accepted, f"the document says {errors or 'yes'}"
    resp = await client.request(method, path, json=body, headers=bearer(alice))
    assert (resp.status < 300) is accepted, f"the server says {resp.status} {await resp.text()}"
    if not accepted:
        assert resp.status == 422, await resp.text()


async def test_the_rules_the_schema_cannot_say_are_in_the_document(document):
    schemas = document["components"]["schemas"]
    assert "bytes of UTF-8" in schemas["RegisterRequest"]["properties"]["password"]["description"]
    assert "NFKC" in schemas["RegisterRequest"]["properties"]["username"]["description"]
    assert "self_message" in schemas["SendMessage"]["properties"]["receiver_id"]["description"]
    assert "idempotency_key_reused" in schemas["SendMessage"]["properties"]["client_msg_id"]["description"]
    operations = {operation["operationId"]: operation for _, _, operation in operations_of(document)}
    assert "self_reference" in operations["addContact"]["responses"]["422"]["x-error-codes"]
    assert "self_reference" in operations["addBlock"]["responses"]["422"]["x-error-codes"]
    assert "self_message" in operations["sendMessage"]["responses"]["422"]["x-error-codes"]
    since = next(p for p in operations["listMessages"]["parameters"] if p["name"] == "since")
    assert "With before too" in since["description"]


async def test_a_message_pattern_is_the_pattern_schema(document):
    message = document["components"]["schemas"]["Message"]
    assert message["properties"]["pattern"] == {"$ref": "#/components/schemas/Pattern"}
    assert document["components"]["schemas"]["Pattern"]["properties"]["duration_s"]["multipleOf"] == 1


def operations_of(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return operations(document)
