"""Layer 4: the real code location loads with the expected objects; layers stay pure."""

import ast
import json
from pathlib import Path

import dagster as dg

import telescope_assets
from telescope_assets.definitions import defs, domain_definitions
from telescope_assets.defs import DOMAINS
from telescope_assets_tests import graph_snapshot

PACKAGE = Path(telescope_assets.__file__).parent


def test_the_graph_is_the_reviewed_snapshot():
    """Assets, deps, partitions, groups, tags, checks, jobs, sensors and schedules.

    After an intended change: ``python -m telescope_assets_tests.graph_snapshot``, then
    review and commit the diff of ``snapshots/asset_graph.json``.
    """
    stored = json.loads(graph_snapshot.SNAPSHOT.read_text())
    now = graph_snapshot.snapshot(defs)
    for part in ("assets", "jobs", "sensors", "schedules", "resources"):
        assert now[part] == stored[part], (
            f"the code location's {part} differ from the snapshot; if intended, run "
            "`python -m telescope_assets_tests.graph_snapshot` and commit the diff"
        )


def test_the_snapshot_would_see_a_new_dependency():
    """A changed graph differs from the stored snapshot (the check above can fail)."""
    now = graph_snapshot.snapshot(defs)

    @dg.asset(deps=["alerts"], group_name="followup")
    def extra():
        """A hypothetical asset."""

    changed = graph_snapshot.snapshot(dg.Definitions.merge(defs, dg.Definitions(assets=[extra])))
    assert set(changed["assets"]) - set(now["assets"]) == {"extra"}
    assert changed["assets"]["extra"]["deps"] == ["alerts"]


def test_every_domain_package_is_merged_into_the_code_location():
    packages = {p.parent.name for p in (PACKAGE / "defs").glob("*/__init__.py")}
    assert packages == set(DOMAINS)
    merged = {a.key for d in domain_definitions() for a in d.assets or ()}
    assert merged == set(defs.resolve_all_asset_keys())


def test_domains_refer_to_each_other_by_key_not_by_import():
    for domain in DOMAINS:
        for path in (PACKAGE / "defs" / domain).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[:2] == ["telescope_assets", "defs"] and len(parts) > 2:
                        other = parts[2]
                        assert other not in DOMAINS or other == domain, (
                            f"{path.relative_to(PACKAGE)} imports the {other} domain"
                        )


def test_every_alert_reaches_back_to_its_frame_reference_and_model():
    graph = defs.resolve_asset_graph()
    ancestors, todo = set(), [dg.AssetKey("alerts")]
    while todo:
        parents = graph.get(todo.pop()).parent_keys - ancestors
        ancestors |= parents
        todo += parents
    for key in ("raw_frames", "calibration_masters", "reference_images", "real_bogus_model"):
        assert dg.AssetKey(key) in ancestors


def test_every_asset_has_a_one_sentence_description_and_group():
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        node = defs.resolve_asset_graph().get(key)
        assert node.description
        assert node.description.endswith(".")
        assert node.group_name in {
            "frames",
            "catalogs",
            "transients",
            "followup",
            "training",
            "models",
            "site_models",
            "lightcurves",
        }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_science_ml_and_simulate_never_import_dagster():
    checked = 0
    for layer in ("science", "ml", "simulate"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "dagster" not in _imports(path), f"{path} imports dagster"
            checked += 1
    # The plain modules that dask workers run are pure too.
    for name in (
        "lake.py",
        "tasks/calibration.py",
        "tasks/catalogs.py",
        "ingest.py",
        "registry/__init__.py",
    ):
        assert "dagster" not in _imports(PACKAGE / name)
        checked += 1
    assert checked >= 10
