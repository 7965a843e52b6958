"""The CNN's flags against the classical measurements, frame by frame."""

import numpy as np
import pandas as pd

from telescope_assets.ml.labels import FLAG_NAMES
from telescope_assets.tasks.quality import classical_flags, compare_flags, flag_agreement


def _frame(frame_id, cnn=(), **measured):
    row = {
        "frame_id": frame_id,
        "transparency": 0.95,
        "seeing_arcsec": 1.5,
        "ellipticity": 0.05,
        "hot_columns": 0,
        "trail_candidates": 0,
        **measured,
    }
    return row | {f"p_flag_{n}": 0.9 if n in cnn else 0.1 for n in FLAG_NAMES}


def test_measurements_raise_the_flags_they_indicate():
    assert classical_flags(_frame("a")) == []
    row = _frame("b", transparency=0.3, seeing_arcsec=3.0, ellipticity=0.4, hot_columns=2,
                 trail_candidates=1)  # fmt: skip
    assert classical_flags(row) == [
        "clouds", "poor_seeing", "tracking", "hot_pixels", "satellite_trail",
    ]  # fmt: skip
    # Not measured (no stars): nothing raised by a missing number.
    assert classical_flags(_frame("c", transparency=np.nan, seeing_arcsec=None)) == []


def test_disagreements_are_named_both_ways():
    table = pd.DataFrame(
        [
            _frame("agree", cnn=("satellite_trail",), trail_candidates=1),
            _frame("missed", trail_candidates=3),  # the CNN misses a trail the detector sees
            _frame("extra", cnn=("hot_pixels", "focus")),  # focus has no measured indicator
            {**_frame("unscored", trail_candidates=1), "p_flag_clouds": None},
        ]
    )
    out = compare_flags(table).set_index("frame_id")
    assert out.flag_disagreements.to_dict() == {
        "agree": "",
        "missed": "satellite_trail:classical",
        "extra": "hot_pixels:cnn",
        "unscored": "",  # the CNN did not score it: nothing to compare
    }
    assert out.cnn_flags["extra"] == "focus,hot_pixels"
    agreement, disagreeing = flag_agreement(out.reset_index())
    assert agreement["satellite_trail"] == {"measured": 3, "cnn": 1, "both": 1}
    assert agreement["hot_pixels"] == {"measured": 0, "cnn": 1, "both": 0}
    assert [d["frame_id"] for d in disagreeing] == ["missed", "extra"]
