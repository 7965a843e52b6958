"""The lake module owns the lake's layout: no other module spells a lake path out."""

import ast
import inspect
from pathlib import Path

import pytest

import telescope_assets
from telescope_assets.lake import Lake

pytestmark = pytest.mark.fast

PACKAGE = Path(telescope_assets.__file__).parent


def _builders() -> dict[str, str]:
    """Every layout builder of :class:`Lake`, called with placeholder arguments."""
    paths = {}
    for name, member in vars(Lake).items():
        if not isinstance(member, staticmethod):
            continue
        params = inspect.signature(member.__func__).parameters.values()
        args = [f"<{p.name}>" for p in params if p.default is inspect.Parameter.empty]
        paths[name] = member.__func__(*args)
    return paths


def _top_folders() -> set[str]:
    paths = [*_builders().values(), Lake.LEDGER, Lake.REFCAT_PATTERN]
    return {p.split("/", 1)[0] for p in paths}


def _string_parts(tree: ast.AST):
    """Every string constant and literal part of an f-string, docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def test_every_builder_is_in_the_layout_table():
    doc = telescope_assets.lake.__doc__
    for name, path in _builders().items():
        top = path.split("/", 1)[0]
        assert f"\n    {top}" in doc, f"Lake.{name} builds {path!r}, not in the layout table"


def test_no_module_but_the_lake_spells_a_lake_path():
    tops = _top_folders()
    assert {"raw", "catalogs", "manifests", "alerts", "training"} <= tops
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "lake.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, text in _string_parts(tree):
            head = text.split("/", 1)[0]
            if "/" in text and head in tops:
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}: {text!r}")
    assert not offenders, "lake paths built outside lake.py:\n" + "\n".join(offenders)


def test_the_scan_sees_an_f_string_path():
    """The check above would catch the kind of path it is there to forbid."""
    tree = ast.parse('def f(site, night, fid):\n    return f"catalogs/{site}/{night}/{fid}"\n')
    assert [text for _, text in _string_parts(tree)] == ["catalogs/", "/", "/"]


def test_builders_lay_out_partitions_under_site_and_night():
    assert Lake.catalog("tololo", "2026-03-18", "f1") == "catalogs/tololo/2026-03-18/f1.parquet"
    assert Lake.manifest("alerts", "tololo", "2026-03-18").startswith(
        Lake.manifests_folder("alerts", "tololo") + "/"
    )
    assert Lake.raw("s", "n", "f", "json").startswith(Lake.raw_folder("s", "n") + "/")
    assert Lake.raw_folder("s").startswith(Lake.raw_folder() + "/")
    assert Lake.ledger("2026-03-18", "b1").startswith(Lake.ledger("2026-03-18") + "/")
    assert Lake.light_curve_points(7, "n").startswith(Lake.light_curve_points(7) + "/")
    assert Lake.quarantine(None, None, "f", "json").startswith("quarantine/_unassigned/")
