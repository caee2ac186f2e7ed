"""Schemathesis against GET /openapi.json of a real server: no 5xx, and every answer fits the document.

The server runs in a background thread with its own event loop (schemathesis calls it over HTTP,
synchronously). Every operation but GET /ws (a WebSocket upgrade) is one test per generation mode
(cases that fit the document, and cases that break it), fuzzed with a valid access token; logout
gets a fresh login per case, so it cannot sign the other cases out.
A failure names the check, the response and a curl command that replays the request.
`pytest tests/test_fuzz.py -s` prints how many cases ran.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Callable, Iterator

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from bipupu_server.app import init_app
from bipupu_server.config import Config
from bipupu_server.web.openapi import document
from tests.conftest import ADMIN_PASSWORD, PASSWORD

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
SEED = 20260210  # fixed, so CI fuzzes the same cases every run
# 30 per operation reaches the branches of these small bodies and keeps the file near 10 s on 2 cores;
# BIPUPU_FUZZ_EXAMPLES=300 is a longer run (about a minute), as deterministic.
EXAMPLES = int(os.environ.get("BIPUPU_FUZZ_EXAMPLES", "30"))
# A slow HTTP call trips Hypothesis's health checks and deadline; derandomize makes each run send the same cases.
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False)
RUN = {"cases": 0, "operations": set()}  # what the fuzz tests sent, for the summary line (docs/RELIABILITY.md)


class LiveServer:
    """The real app on 127.0.0.1 (a free port), served from a thread running its own event loop."""

    def __init__(self, config: Config):
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=30)
        if not self.url:
            self._thread.join(timeout=30)
            raise RuntimeError("the fuzz server did not start") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the fuzz server thread did not stop"
        if self._error is not None:
            raise RuntimeError("the fuzz server failed") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())  # also shuts down async generators and the default executor
        except BaseException as exc:  # handed to the test thread, which raises it
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(init_app(self.config), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()  # on_shutdown (sockets), then the cleanup contexts (scheduler, database)


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


def steering_hooks(document: dict[str, Any], body: dict[str, st.SearchStrategy],
                   path: dict[str, st.SearchStrategy]) -> tuple[Callable, Callable]:
    """Hooks that sometimes swap a generated id or password for one that exists, so 2xx paths get fuzzed too."""
    # Only a value that fits every schema the document gives its field is swapped, for one that fits as well:
    # a case generated to break the schema still breaks it the same way.
    schemas = body_field_schemas(document)
    validators = {field: [Draft202012Validator(schema) for schema in schemas[field]] for field in body}

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


def register(http: requests.Session, url: str, username: str) -> dict[str, Any]:
    resp = http.post(f"{url}/auth/register", json={"username": username, "password": PASSWORD}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def send(http: requests.Session, url: str, sender: dict[str, Any], receiver: dict[str, Any], content: str) -> str:
    resp = http.post(f"{url}/messages", json={"receiver_id": receiver["bipupu_id"], "content": content},
                     headers={"Authorization": f"Bearer {sender['access_token']}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running server with the fuzzing user (whose token the run uses), a peer, a user for logout, and cards."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    config = Config(data_dir=data_dir, secret_key="fuzz-secret-key-0123456789abcdef", bcrypt_cost=4,
                    admin_password=ADMIN_PASSWORD, rate_limit=False)
    server = LiveServer(config)
    server.start()
    http = requests.Session()
    try:
        fuzzer = register(http, server.url, "fuzzer")
        peer = register(http, server.url, "peer")
        leaver = register(http, server.url, "leaver")
        cards = [send(http, server.url, a, b, f"card {i}") for i, (a, b) in
                 enumerate([(fuzzer, peer), (peer, fuzzer), (peer, fuzzer), (fuzzer, peer)])]
        users = [fuzzer["bipupu_id"], peer["bipupu_id"], leaver["bipupu_id"], "00000001"]
        others = st.sampled_from(users[1:])
        known_body = {
            "receiver_id": st.sampled_from([*users[1:], "cosmic.fortune", "bipupu.notice"]),
            "contact_id": others, "blocked_id": others,
            "username": st.one_of(st.sampled_from(["peer", "Leaver"]), st.from_regex(r"\Anew[a-z0-9_.-]{1,20}\Z")),
            "password": st.just(PASSWORD), "old_password": st.just(PASSWORD),
            "refresh_token": st.just(peer["refresh_token"]),
        }
        known_path = {"contact_id": others, "blocked_id": others, "bipupu_id": st.sampled_from(users),
                      "message_id": st.sampled_from(cards)}
        yield {"url": server.url, "http": http, "token": fuzzer["access_token"], "peer_id": peer["bipupu_id"],
               "known_body": known_body, "known_path": known_path}
    finally:
        http.close()
        server.stop()
        print(f"\nschemathesis: {RUN['cases']} cases against {len(RUN['operations'])} operations")


@pytest.fixture(scope="module")
def api_schema(live: dict[str, Any]):
    # Test credentials only: failures show them unmasked, so the printed curl replays as is.
    config = schemathesis.Config.from_dict({"seed": SEED, "output": {"sanitization": {"enabled": False}}})
    loaded = schemathesis.openapi.from_url(f"{live['url']}/openapi.json", timeout=10, config=config)
    for hook in steering_hooks(loaded.raw_schema, live["known_body"], live["known_path"]):
        loaded.hook(hook)
    return loaded


def fuzz_targets() -> list[Any]:
    """Every operation the document describes but the WebSocket upgrade, with each generation mode that fits it.

    Cases that break the document need something to break: operations without parameters, body
    or security get only cases that fit it.
    """
    targets, whole = [], document()
    for path, operations in whole["paths"].items():
        for method, operation in operations.items():
            if (method, path) == ("get", "/ws"):
                continue
            breakable = ("parameters" in operation or "requestBody" in operation
                         or operation.get("security", whole.get("security")))
            for mode in [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][:2 if breakable else 1]:
                targets.append(pytest.param(method.upper(), path, operation["operationId"], mode,
                                            id=f"{method.upper()} {path} {mode}"))
    # Fuzzing nothing must fail, not pass: a plumbing fault would otherwise read as "0 cases, 0 failures".
    assert len(targets) >= 40, f"only {len(targets)} operations and modes to fuzz in the OpenAPI document"
    return targets


def call_and_validate(case: schemathesis.Case, live: dict[str, Any], token: str) -> None:
    RUN["cases"] += 1
    RUN["operations"].add(case.operation.label)
    case.call_and_validate(base_url=live["url"], session=live["http"], headers={"Authorization": f"Bearer {token}"},
                           timeout=10, checks=CHECKS)


def fresh_leaver_token(live: dict[str, Any]) -> str:
    """A new login of the leaver: a fuzzed logout, even with all=true, then ends only the leaver's sessions."""
    resp = live["http"].post(f"{live['url']}/auth/login", json={"username": "leaver", "password": PASSWORD},
                             timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


# schemathesis is used as a library (load the document, `APIOperation.as_strategy()` under Hypothesis's
# `@given`, `Case.call_and_validate`), the interface its documentation offers for tests of one's own; its
# pytest plugin, which reaches into pytest internals, is switched off in setup.cfg (`-p no:schemathesis`).
@pytest.mark.parametrize(("method", "path", "operation_id", "mode"), fuzz_targets())
def test_every_operation_answers_as_documented(api_schema, live: dict[str, Any], method: str, path: str,
                                               operation_id: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    assert operation.definition.raw["operationId"] == operation_id  # the served document is the one collected
    sent = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        token = fresh_leaver_token(live) if operation_id == "logout" else live["token"]
        call_and_validate(case, live, token)
        sent.append(case)

    fuzz()
    assert sent, f"no case was generated for {method} {path}"


def nested(depth: int, open_: str = '{"a":', close: str = "}") -> str:
    """JSON text nested `depth` levels deep (as text: Python's json module runs out of recursion first)."""
    return open_ * depth + "1" + close * depth


# Bodies schemathesis does not generate: nesting deeper than orjson.dumps takes (254 levels) yet shallower than
# orjson.loads refuses (1024), in the free-form objects; and one past 1024, which must stay a 400.
HOSTILE = [  # PEER is swapped for the peer's bipupu_id
    pytest.param("PUT", "/me", f'{{"cosmic_profile":{nested(254)}}}', id="profile-254-deep"),
    pytest.param("PUT", "/me", f'{{"cosmic_profile":{nested(300)}}}', id="profile-300-deep"),
    pytest.param("PUT", "/me", f'{{"cosmic_profile":{{"a":{nested(300, "[", "]")}}}}}', id="profile-list-300-deep"),
    pytest.param("PUT", "/me", f'{{"cosmic_profile":{nested(1100)}}}', id="profile-1100-deep"),
    pytest.param("POST", "/messages", f'{{"receiver_id":"PEER","content":"x","pattern":{nested(300)}}}',
                 id="pattern-300-deep"),
    pytest.param("POST", "/messages", f'{{"receiver_id":"PEER","content":{nested(300)}}}', id="content-300-deep"),
]


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE)
def test_deeply_nested_bodies_answer_as_documented(request: pytest.FixtureRequest, api_schema, live: dict[str, Any],
                                                     method: str, path: str, body: str) -> None:
    """Each hostile body gets a documented answer, and the caller's account still reads back as documented."""
    user = register(live["http"], live["url"], f"deep.{request.node.callspec.id}")
    raw = body.replace("PEER", live["peer_id"]).encode()  # bytes: schemathesis sends them as they are
    case = api_schema[path][method].Case(body=raw, media_type="application/json")
    call_and_validate(case, live, user["access_token"])
    call_and_validate(api_schema["/me"]["GET"].Case(), live, user["access_token"])
