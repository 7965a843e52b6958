"""The package's shape: functions short enough to read, each doing one job."""

import ast
from pathlib import Path

import pytest

import telescope_assets

pytestmark = pytest.mark.fast

PACKAGE = Path(telescope_assets.__file__).parent
#: The longest function (docstring included) the package may hold; see docs/architecture.md.
MAX_FUNCTION_LINES = 80


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(PACKAGE), node


def test_no_function_is_longer_than_80_lines():
    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_the_count_sees_the_package():
    names = {node.name for _, node in _functions()}
    assert {"catalog_one", "difference_one", "simulate_network", "render"} <= names
