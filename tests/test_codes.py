"""Every error code the server can send is in errors.CODES, and the document lists each where it is sent."""

from __future__ import annotations

import re
from pathlib import Path

import bipupu_server
from bipupu_server.errors import CODES, AppError
from bipupu_server.protocol import FRAME_CODES
from bipupu_server.web.middleware import HTTP_CODES
from bipupu_server.web.openapi import ANYWHERE, document

SOURCE = Path(bipupu_server.__file__).parent
# code="x", code = "x", "code": "x", status, code = 4xx, "x", _error_body("x", and frame("error", code="x")
USES = re.compile(r'''code\s*=\s*"([a-z0-9_]+)"|"code":\s*"([a-z0-9_]+)"|code\s*=\s*[0-9]{3},\s*"([a-z0-9_]+)"'''
                  r'''|_error_body\(\s*"([a-z0-9_]+)"''')


def codes_in_source() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        for match in USES.finditer(path.read_text()):
            code = next(group for group in match.groups() if group)
            found.setdefault(code, set()).add(str(path.relative_to(SOURCE)))
    return found


def test_the_source_search_finds_codes():
    found = codes_in_source()
    assert {"invalid_field", "self_reference", "too_many_connections", "bad_json", "database_unavailable"} <= set(found)
    assert len(found) >= 50


def test_every_code_the_source_sends_is_in_the_table():
    unknown = {code: sorted(where) for code, where in codes_in_source().items()
               if code not in CODES and code not in FRAME_CODES}
    assert not unknown, f"codes missing from errors.CODES: {unknown}"


def test_aiohttp_errors_map_to_codes_of_the_table_with_their_status():
    for status, (code, _) in HTTP_CODES.items():
        assert CODES[code][0] == status, code


def test_each_error_class_default_code_has_its_status():
    classes = [cls for cls in _subclasses(AppError)]
    assert len(classes) >= 9
    for cls in classes:
        assert CODES[cls.code][0] == cls.status, cls.__name__


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_each_documented_answer_lists_codes_of_its_status():
    whole = document()
    listed: set[str] = set()
    for path, operations in whole["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for code in answer.get("x-error-codes", []):
                    assert CODES[code][0] == int(status), f"{method} {path}: {code} under {status}"
                    listed.add(code)
                if status.startswith(("4", "5")) and operation["operationId"] != "health":
                    assert answer["x-error-codes"], f"{method} {path} {status} lists no code"
    # A code nobody can meet is a stale entry; one met only before routing is listed as such.
    # The generic ones are the error classes' defaults; services and accounts are administered from the
    # command line (and the admin pages), so no REST operation sends their codes.
    generic = {"bad_request", "unauthorized", "forbidden", "conflict"}
    services = {"service_exists"}
    administration = {"last_admin"}  # account administration (admin.py): pages, not REST, answer it
    unlisted = sorted(set(CODES) - listed - set(ANYWHERE) - generic - services - administration)
    assert not unlisted, f"codes no operation lists: {unlisted}"
    for code in CODES:
        assert f"`{code}`" in whole["info"]["description"], code
