"""Every manifest has a declared schema: an empty partition has its columns, types hold."""

import ast
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telescope_assets
from telescope_assets.lake import Lake
from telescope_assets.manifests import MANIFEST_SCHEMAS, UndeclaredColumnWarning, conform, empty

pytestmark = pytest.mark.fast

PACKAGE = Path(telescope_assets.__file__).parent


def test_an_empty_partition_has_every_declared_column(tmp_path):
    lake = Lake(str(tmp_path))
    rel = lake.write_manifest("alerts", "tololo", "2026-03-18", pd.DataFrame())
    table = pq.read_table(io.BytesIO(lake.read_bytes(rel)))
    assert table.num_rows == 0
    assert table.schema.names == MANIFEST_SCHEMAS["alerts"].names
    assert table.schema.field("p_real").type == pa.float32()
    # Read back, or read where none was written: the columns, no guard needed.
    assert list(lake.read_manifest("alerts", "tololo", "2026-03-18").columns)[:2] == ["x", "y"]
    missing = lake.read_manifest("alerts", "lapalma", "2026-03-18")
    assert len(missing) == 0
    assert "object_kind" in missing


def test_types_are_the_declared_ones_whatever_pandas_inferred():
    df = pd.DataFrame({"field": ["F1", "F2"], "n_frames": [3.0, np.nan], "built_now": [True, None]})
    table = conform("reference_images", df)
    assert table.schema.field("n_frames").type == pa.int64()
    assert table.column("n_frames").to_pylist() == [3, None]
    assert table.column("built_now").to_pylist() == [True, None]
    assert table.column("path").null_count == 2  # declared, absent: all null


def test_an_undeclared_column_is_kept_and_named():
    df = pd.DataFrame({"frame_id": ["a"], "new_metric": [1.5]})
    with pytest.warns(UndeclaredColumnWarning, match="new_metric"):
        table = conform("calibrated_frames", df)
    assert table.schema.names[-1] == "new_metric"
    assert table.column("new_metric").to_pylist() == [1.5]


def test_every_declared_manifest_reads_back_empty_with_its_dtypes():
    for asset in MANIFEST_SCHEMAS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            frame = empty(asset)
        assert list(frame.columns) == MANIFEST_SCHEMAS[asset].names


def test_no_module_writes_a_manifest_around_its_schema():
    """Manifests go through Lake.write_manifest, never write_parquet(lake.manifest(...))."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "write_parquet" or not node.args:
                continue
            target = node.args[0]
            builds = isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute)
            if builds and target.func.attr == "manifest":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders
