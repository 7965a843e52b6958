"""tasks.transients.plan_subtractions: which frames are searched, kept or skipped, and why."""

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.tasks.transients import difference_provenance, plan_subtractions


def _frame(fid, **kw):
    return {"frame_id": fid, "object": "F1", "filter": "r", "wcs_ok": True,
            "zero_point": 23.0, "provkey": f"cat-{fid}"} | kw  # fmt: skip


def test_frames_are_subtracted_kept_or_skipped_with_their_reason(tmp_path):
    lake = Lake(str(tmp_path))
    catalogs = pd.DataFrame(
        [
            _frame("new"),
            _frame("current"),
            _frame("stale"),
            _frame("cloudy"),
            _frame("other_band", filter="g"),
            _frame("no_zp", zero_point=np.nan),
        ]
    )
    quality = pd.DataFrame({"frame_id": ["cloudy", "new"], "quality_class": ["bad", "good"]})
    ref = {"field": "F1", "filter": "r", "reference_id": "ref-1"}
    refs = pd.DataFrame([ref, {"field": "F1", "filter": "g", "reference_id": ""}])
    lake.write_bytes("candidates/current.parquet", b"x")
    current = catalogs.iloc[1].to_dict()
    previous = {
        "current": {"frame_id": "current", "status": "subtracted",
                    "provkey": difference_provenance(current, ref),
                    "candidates_path": "candidates/current.parquet"},
        "stale": {"frame_id": "stale", "status": "subtracted", "provkey": "old",
                  "candidates_path": "candidates/stale.parquet"},
    }  # fmt: skip
    todo, kept, skipped = plan_subtractions(catalogs, quality, refs, previous, lake)
    assert [(row["frame_id"], r["reference_id"]) for row, r in todo] == [
        ("new", "ref-1"),
        ("stale", "ref-1"),
    ]
    assert [r["frame_id"] for r in kept] == ["current"]
    assert {r["frame_id"]: r["status"] for r in skipped} == {
        "cloudy": "bad_quality",
        "other_band": "no_reference",  # its reference has no id: none made yet
        "no_zp": "no_wcs_or_zero_point",
    }
    assert plan_subtractions(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, lake) == (
        [],
        [],
        [],
    )
