"""The benchmarks import the app lazily, inside functions (Django is set up first), so a
renamed or moved name only fails deep into `make bench`. Every such import must resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def app_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "conversations",
                "chatsite",
            ):
                found += [(path.name, node.module, alias.name) for alias in node.names]
    return found


def test_the_benchmarks_import_the_app():
    assert len(app_imports()) >= 5


@pytest.mark.parametrize(("file", "module", "name"), app_imports())
def test_every_name_a_benchmark_imports_from_the_app_exists(file, module, name):
    imported = importlib.import_module(module)
    assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (
        f"{file}: from {module} import {name}"
    )
