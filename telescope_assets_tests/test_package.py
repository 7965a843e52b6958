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


def _loops_in_defs():
    for path in sorted((PACKAGE / "defs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.For | ast.AsyncFor | ast.While):
                yield f"{path.relative_to(PACKAGE)}:{node.lineno}"


def test_definitions_hold_no_loops_over_data():
    """defs/ reads inputs, calls a task, makes Dagster objects: decisions live in tasks/.

    A comprehension that turns decided items into Dagster objects (run requests,
    metadata) is allowed; a ``for`` or ``while`` statement is logic to move out.
    """
    loops = list(_loops_in_defs())
    assert not loops, "move these loops into a tested function of tasks/:\n" + "\n".join(loops)


def test_the_loop_scan_sees_a_loop(tmp_path, monkeypatch):
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "sensor.py").write_text("for x in []:\n    pass\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert list(_loops_in_defs()) == ["defs/sensor.py:1"]
