"""Schemathesis against GET /openapi.json of a real server, with all its checks and its stateful phase.

The server runs in a background thread with its own event loop. `schemathesis run` (the command
users run) fuzzes it in a subprocess: every operation but GET /ws (a WebSocket upgrade), in all
four phases (examples, coverage, fuzzing, stateful sequences over the links it infers), with
`--checks all` plus this project's `error_code_documented`, a fixed seed and a bounded number
of cases. tests/fuzz_hooks.py holds the hooks (authentication, steering, the rules the document
states only in words) and says why each is there.

A failure prints schemathesis's report: the check, the response and a curl command that replays it.
`BIPUPU_FUZZ_EXAMPLES=300 pytest tests/test_fuzz.py -s` is a longer run, as repeatable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

from bipupu_server.config import Config
from tests.conftest import ADMIN_PASSWORD, PASSWORD
from tests.fuzz_hooks import CONTEXT_VARIABLE
from tests.live import LiveServer

ROOT = Path(__file__).resolve().parent.parent
SEED = 20260210  # fixed, so CI fuzzes the same cases every run
# 25 per operation and phase reaches the branches of these small bodies and keeps the run near 30 s
# on 2 cores; BIPUPU_FUZZ_EXAMPLES=300 is a longer run, as deterministic.
EXAMPLES = int(os.environ.get("BIPUPU_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


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
    base = tmp_path_factory.mktemp("fuzz")
    (base / "data").mkdir()
    config = Config(data_dir=base / "data", secret_key="fuzz-secret-key-0123456789abcdef", bcrypt_cost=4,
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
        context = {"url": server.url, "password": PASSWORD, "admin_password": ADMIN_PASSWORD, "fuzzer": fuzzer,
                   "peer": peer, "leaver": leaver,
                   "cards": cards, "answers": str(base / "answers.jsonl")}
        context_file = base / "context.json"
        context_file.write_text(json.dumps(context))
        yield {**context, "context": context, "http": http, "context_file": context_file, "base": base}
    finally:
        http.close()
        server.stop()


def run_schemathesis(live: dict[str, Any], *arguments: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` against the live server with tests/fuzz_hooks.py, as a user would run it."""
    executable = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", CONTEXT_VARIABLE: str(live["context_file"]),
           "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run(
        [str(executable), "run", f"{live['url']}/openapi.json", "--checks", "all", "--seed", str(SEED),
         "--max-examples", str(EXAMPLES), "--generation-deterministic", "--phases",
         "examples,coverage,fuzzing,stateful", "--exclude-path", "/ws", "--workers", "1", "--no-color",
         "--output-sanitize", "false", "--request-timeout", "10", "--report", "junit",
         "--report-junit-path", str(live["base"] / "junit.xml"), *arguments],
        cwd=live["base"], env=env, capture_output=True, text=True, timeout=600)  # its cache stays in tmp


def test_schemathesis_with_all_checks_and_the_stateful_phase_finds_nothing(live: dict[str, Any]) -> None:
    result = run_schemathesis(live)
    report = result.stdout + result.stderr
    print(report[-3000:])
    assert result.returncode == 0, report
    # Fuzzing nothing must fail, not pass: a plumbing fault would otherwise read as "0 cases, 0 failures".
    summary = report[report.rfind("API Operations:"):]
    assert "Tested: 23" in summary, summary
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, f"the {phase} phase did not pass: {summary}"
    # The hooks were loaded and the token worked: every operation was answered with a success at
    # least once, so the run tested more than the refusals at the door.
    answers = [json.loads(line) for line in Path(live["context"]["answers"]).read_text().splitlines()]
    succeeded = {label for label, status, _ in answers if 200 <= status < 300}
    operations = {label for label, _, _ in answers}
    assert len(operations) == 23 and succeeded == operations, sorted(operations - succeeded)
    assert len(answers) >= 20 * min(EXAMPLES, 25), len(answers)


def test_the_run_can_fail(live: dict[str, Any], tmp_path: Path) -> None:
    """The same run against a document that promises what the server refuses reports it (and exits 1)."""
    document = requests.get(f"{live['url']}/openapi.json", timeout=10).json()
    schema = document["components"]["schemas"]["SendMessage"]["properties"]["content"]
    schema.pop("pattern")  # the document now accepts blank content, which the server refuses with 422
    lying = tmp_path / "openapi.json"
    lying.write_text(json.dumps(document))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", str(lying), "--url", live["url"],
         "--checks", "positive_data_acceptance", "--seed", str(SEED), "--max-examples", "10",
         "--phases", "coverage", "--include-path", "/messages", "--include-method", "POST",
         "-H", f"Authorization: Bearer {live['fuzzer']['access_token']}", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Schema-valid request rejected" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def api_schema(live: dict[str, Any]):
    # Test credentials only: failures show them unmasked, so the printed curl replays as is.
    config = schemathesis.Config.from_dict({"seed": SEED, "output": {"sanitization": {"enabled": False}}})
    return schemathesis.openapi.from_url(f"{live['url']}/openapi.json", timeout=10, config=config)


def call_and_validate(case: schemathesis.Case, live: dict[str, Any], token: str) -> None:
    case.call_and_validate(base_url=live["url"], session=live["http"], headers={"Authorization": f"Bearer {token}"},
                           timeout=10, checks=CHECKS)


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
    raw = body.replace("PEER", live["peer"]["bipupu_id"]).encode()  # bytes: schemathesis sends them as they are
    case = api_schema[path][method].Case(body=raw, media_type="application/json")
    call_and_validate(case, live, user["access_token"])
    call_and_validate(api_schema["/me"]["GET"].Case(), live, user["access_token"])
