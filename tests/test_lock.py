"""The lock files (requirements/*.txt) agree with setup.cfg and with what this environment runs."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"run": REPO / "requirements" / "run.txt", "test": REPO / "requirements" / "test.txt"}


def declared() -> dict[str, list[Requirement]]:
    """setup.cfg's ranges: what running needs, and what the tests need besides."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    run = [Requirement(line) for line in cfg["options"]["install_requires"].strip().splitlines()]
    test = [Requirement(line) for line in cfg["options.extras_require"]["test"].strip().splitlines()]
    return {"run": run, "test": run + test}


def pins(lock: Path) -> dict[str, tuple[Version, Marker | None]]:
    """name → (exact version, environment marker) of every line of a lock."""
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if not line or line[0] in "# ":
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        found[canonicalize_name(requirement.name)] = (Version(specifier.version), requirement.marker)
    return found


@pytest.mark.parametrize("which", ["run", "test"])
def test_every_declared_dependency_is_locked_within_its_range(which):
    locked = pins(LOCKS[which])
    for requirement in declared()[which]:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is in setup.cfg but not in {LOCKS[which].name}: refresh the lock"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (requirement, locked[name][0])


def test_both_locks_pin_the_same_version_of_what_they_share():
    run, test = pins(LOCKS["run"]), pins(LOCKS["test"])
    assert set(run) <= set(test)
    assert {name: run[name][0] for name in run} == {name: test[name][0] for name in run}


def test_this_environment_runs_the_locked_versions():
    # The tests are only as good as the versions they ran against: installed as the README says
    # (`-c requirements/test.txt`), every package that applies here is exactly the locked one.
    wrong = {}
    for name, (version, marker) in pins(LOCKS["test"]).items():
        if marker is not None and not marker.evaluate():
            continue
        installed = Version(metadata.version(name))
        if installed != version:
            wrong[name] = f"{installed} installed, {version} locked"
    assert not wrong, wrong
