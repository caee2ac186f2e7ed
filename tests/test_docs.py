"""The documents that point at tests point at tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`(test_[a-z_]+\.py)::(test_[A-Za-z0-9_]+)`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("document", ["SECURITY.md"])
def test_every_test_a_document_names_exists(document):
    references = REFERENCE.findall((REPO / document).read_text(encoding="utf-8"))
    assert len(references) >= 20, references  # the document does name its tests
    missing = [f"{file}::{name}" for file, name in references
               if not (REPO / "tests" / file).is_file() or name not in functions_in(REPO / "tests" / file)]
    assert not missing, missing
