"""The rules of docs/ARCHITECTURE.md that the source itself can show: who imports whom, and where SQL lives."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import bipupu_server

SOURCE = Path(bipupu_server.__file__).parent
SQL = re.compile(r"^\s*(SELECT |INSERT |UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX|UNIQUE)|ALTER TABLE|PRAGMA \w"
                 r"|BEGIN|COMMIT|ROLLBACK|SAVEPOINT)")


def modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("bipupu_server",) + path.relative_to(SOURCE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module this one imports (at any level, TYPE_CHECKING included), by full name."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is not None:  # `from . import x` imports the module x, not the package's other parts
                found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(name, path) if m in mods and m != name} for name, path in mods.items()}


def test_the_graph_sees_the_imports():
    edges = graph()
    assert "bipupu_server.store.db" in edges["bipupu_server.store.users"]
    assert "bipupu_server.accounts" in edges["bipupu_server.admin"]
    assert "bipupu_server.keys" in edges["bipupu_server.web.ws"]
    assert len(edges) >= 40


def test_no_import_circle():
    edges, state, circles = graph(), {}, []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target] if target in path else [name, target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not circles, circles


def test_config_imports_nothing_of_the_domain():
    assert graph()["bipupu_server.config"] <= {"bipupu_server.ratelimit"}
    assert graph()["bipupu_server.ratelimit"] <= {"bipupu_server.clock"}


def test_identity_rules_and_passwords_depend_on_nothing_but_errors_and_text():
    for name in ("bipupu_server.identity", "bipupu_server.passwords", "bipupu_server.protocol"):
        assert graph()[name] <= {"bipupu_server.errors", "bipupu_server.text"}, name


def test_the_store_knows_no_http_and_no_domain():
    mods = modules()
    for name, path in mods.items():
        if name.startswith("bipupu_server.store"):
            outside = {m for m in graph()[name] if not m.startswith("bipupu_server.store")}
            assert outside <= {"bipupu_server.errors"}, (name, outside)
            assert not {m for m in imports(name, path) if m.startswith("aiohttp")}, name


def test_the_domain_knows_no_aiohttp_web():
    wiring = {"bipupu_server.app", "bipupu_server.keys", "bipupu_server.cli"}
    for name, path in modules().items():
        if name.startswith("bipupu_server.web") or name in wiring:
            continue
        assert not {m for m in imports(name, path) if m.startswith("aiohttp")}, name


def test_the_hub_runs_no_sql():
    assert not {m for m in graph()["bipupu_server.hub"] if m.startswith("bipupu_server.store")}


def test_sql_lives_in_the_store():
    """No string that starts like an SQL statement outside store/ (the schema files are SQL, not Python)."""
    found = []
    for name, path in modules().items():
        if name.startswith("bipupu_server.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                found.append((name, node.lineno, node.value[:40]))
    assert not found, found


def test_the_sql_search_finds_sql():
    hits = [node.value for node in ast.walk(ast.parse((SOURCE / "store" / "users.py").read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)]
    assert len(hits) >= 5


def test_a_server_without_the_relay_never_loads_bleak():
    """bleak (and D-Bus with it) loads only when the relay runs or a ble-* command does."""
    code = ("import sys; import bipupu_server.app, bipupu_server.cli, bipupu_server.web.health; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bleak', 'bleak_retry_connector', "
            "'dbus_fast')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
