"""The package as a user installs it: a real wheel in a new virtual environment, served from another directory.

Slow by nature (a wheel build and an install, about 20 s): it is what `pip install .` does on a new
machine, where nothing of the checkout is there to lean on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from bipupu_server import __version__
from tests.conftest import ADMIN_PASSWORD
from tests.processes import Server, call, environment

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT_S = 300


def run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=environment(), capture_output=True,
                            text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def shipped(directory: str) -> list[str]:
    """The files under the repository's `directory` that the package must carry (hidden ones are not shipped)."""
    base = REPO / "bipupu_server" / directory
    return sorted(str(path.relative_to(base)) for path in base.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(base).parts))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A wheel built from a copy of the checkout, installed (with the run lock) into a new venv."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "data", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "dist", source, cwd=work)
    wheels = list((work / "dist").glob("bipupu_server-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=work)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", wheels[0], "-c", REPO / "requirements" / "run.txt",
        cwd=work)
    elsewhere = work / "elsewhere"  # neither the checkout nor the copy it was built from
    elsewhere.mkdir()
    shutil.rmtree(source)
    yield {"bin": bin_dir, "cwd": elsewhere}


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    where = run(installed["bin"] / "python", "-c", "import bipupu_server; print(bipupu_server.__file__)",
                cwd=installed["cwd"]).strip()
    assert Path(where).is_relative_to(installed["bin"].parent), where
    assert not Path(where).is_relative_to(REPO), where


def test_the_wheel_carries_the_schema_migrations_templates_and_static_files(installed):
    listing = run(installed["bin"] / "python", "-c", """if True:
        from importlib import resources
        root = resources.files("bipupu_server")
        print(root.joinpath("schema.sql").read_text(encoding="utf-8").count("CREATE TABLE"))
        for directory in ("templates", "static", "migrations"):
            base = root / directory
            def walk(node, prefix=""):
                for child in sorted(node.iterdir(), key=lambda c: c.name):
                    if child.is_dir():
                        yield from walk(child, prefix + child.name + "/")
                    elif not child.name.startswith("."):
                        yield prefix + child.name
            print(directory, *walk(base)) if base.is_dir() else print(directory)
    """, cwd=installed["cwd"]).splitlines()
    tables = (REPO / "bipupu_server" / "schema.sql").read_text(encoding="utf-8").count("CREATE TABLE")
    assert int(listing[0]) == tables > 0
    assert listing[1].split() == ["templates", *shipped("templates")]
    assert listing[2].split() == ["static", *shipped("static")]
    migrations = sorted(p.name for p in (REPO / "bipupu_server" / "migrations").glob("*.sql"))
    assert listing[3].split() == ["migrations", *migrations] and len(migrations) >= 4


def test_bipupu_server_serves_health_from_another_directory(installed, tmp_path):
    data_dir = installed["cwd"] / "data"
    server = Server(tmp_path, data_dir, environment(BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD), "wheel",
                    command=[str(installed["bin"] / "bipupu-server")])
    try:
        server.wait_ready()
        status, health = call(server.url, "GET", "/health")
        assert status == 200 and health["status"] == "ok" and health["version"] == __version__, health
        status, login = call(server.url, "POST", "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
        assert status == 200 and login["bipupu_id"] == "00000001", login
    finally:
        assert server.stop() == 0, server.stderr
    assert (data_dir / "bipupu.db").is_file()
    assert "stopped cleanly" in server.stderr
