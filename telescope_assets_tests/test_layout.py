"""The tests mirror the package: ``telescope_assets/a/b.py`` is tested in ``a/test_b.py``.

A new module comes with its mirrored test module. The modules listed in
:data:`NOT_YET_MIRRORED` predate the rule: each is tested, but from a module named for
what it checks (``test_catalogs.py`` covers ``science/astrometry.py`` against truth,
``defs/test_materialize.py`` the assets through the graph). The list may only shrink: a
test fails when one of them gets its mirror and is still listed.
"""

from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

PACKAGE = Path(__file__).resolve().parents[1] / "telescope_assets"
TESTS = Path(__file__).resolve().parent

NOT_YET_MIRRORED = {
    "defs/catalogs/assets.py",
    "defs/followup/assets.py",
    "defs/followup/sensors.py",
    "defs/frames/assets.py",
    "defs/ingest/sensors.py",
    "defs/lightcurves/assets.py",
    "defs/lightcurves/sensors.py",
    "defs/metadata.py",
    "defs/models/assets.py",
    "defs/models/sites.py",
    "defs/partitions.py",
    "defs/transients/assets.py",
    "demo.py",
    "ml/data.py",
    "ml/evaluate.py",
    "ml/labels.py",
    "ml/model_registry.py",
    "ml/modules.py",
    "ml/networks.py",
    "ml/train.py",
    "ops/pg_storage.py",
    "ops/pools.py",
    "ops/warmup.py",
    "plots.py",
    "registry/check.py",
    "registry/refcat.py",
    "report.py",
    "resources/compute.py",
    "resources/mlflow.py",
    "resources/registry.py",
    "resources/storage.py",
    "science/astrometry.py",
    "science/containers.py",
    "science/ephemeris.py",
    "science/nights.py",
    "simulate/catalogs.py",
    "simulate/cli.py",
    "simulate/fields.py",
    "simulate/network.py",
    "simulate/optics.py",
    "tasks/alerts.py",
    "tasks/calibration.py",
    "tasks/catalogs.py",
    "tasks/lightcurves.py",
    "tasks/reconcile.py",
    "tasks/site_learning.py",
}


def _mirror(module: Path) -> Path:
    rel = module.relative_to(PACKAGE)
    return TESTS / rel.parent / f"test_{rel.name}"


def _unmirrored() -> set[str]:
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    return {p.relative_to(PACKAGE).as_posix() for p in modules if not _mirror(p).exists()}


def test_every_new_module_has_its_mirrored_test_module():
    missing = sorted(_unmirrored() - NOT_YET_MIRRORED)
    assert not missing, "write the mirrored test module (a/b.py -> a/test_b.py) of:\n" + (
        "\n".join(missing)
    )


def test_the_list_of_modules_without_a_mirror_only_shrinks():
    mirrored_now = sorted(NOT_YET_MIRRORED - _unmirrored())
    assert not mirrored_now, f"remove from NOT_YET_MIRRORED: {mirrored_now}"


def test_every_test_folder_is_a_package_folder():
    folders = {p.parent.relative_to(TESTS) for p in TESTS.rglob("test_*.py")}
    extra = {"reliability"}  # faults across the whole deployment, not one module
    assert {f.as_posix() for f in folders} - extra <= {
        p.relative_to(PACKAGE).as_posix() for p in [PACKAGE, *PACKAGE.rglob("*")] if p.is_dir()
    } | {"."}


def test_no_test_module_imports_another():
    """Shared fixtures live in conftest.py files, shared helpers in plain modules."""
    import ast

    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if (module or "").startswith("telescope_assets_tests.") and ".test_" in module:
                found.append(f"{path.relative_to(TESTS)}: from {module}")
    assert not found, "\n".join(found)
