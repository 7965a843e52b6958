"""The quality classes of a frame and their cuts, defined once.

The simulator labels its frames with them (truth), the pipeline classifies measured
frames with them (``frame_quality``), and the flags that stand for them (``clouds``,
``poor_seeing``, ``elongated``) are raised at the same values::

    bad     transparency < 0.5, seeing > 3.5", or a defect that ruins the frame
            (simulated: tracking, focus; measured: no stars, failed WCS, elongated stars)
    medium  transparency < 0.85, seeing > 2.5", or a defect that spoils part of it
            (simulated: satellite trail, new hot column; measured: trail or hot columns)
    good    otherwise

A measurement that is missing (NaN: no zero point, no stars to measure the seeing) makes
a frame ``bad``.
"""

from __future__ import annotations

import math

__all__ = [
    "BAD_SEEING_ARCSEC",
    "BAD_TRANSPARENCY",
    "ELONGATED_ELLIPTICITY",
    "MEDIUM_SEEING_ARCSEC",
    "MEDIUM_TRANSPARENCY",
    "classify",
    "classify_measured",
]

#: Below this transparency a frame is ``bad`` (and flagged ``clouds``).
BAD_TRANSPARENCY = 0.5
#: Above this seeing (arcsec) a frame is ``bad`` (and flagged ``poor_seeing``).
BAD_SEEING_ARCSEC = 3.5
#: Below this transparency a frame is at best ``medium``.
MEDIUM_TRANSPARENCY = 0.85
#: Above this seeing (arcsec) a frame is at best ``medium``.
MEDIUM_SEEING_ARCSEC = 2.5
#: Median star ellipticity above which a frame is flagged ``elongated`` (trailed, bad).
ELONGATED_ELLIPTICITY = 0.3


def classify(transparency: float, seeing_arcsec: float, ruined: bool, spoiled: bool) -> str:
    """The class of a frame with this transparency and seeing, and these defects.

    ``ruined``: a defect that makes the frame ``bad`` whatever its conditions;
    ``spoiled``: one that makes it at best ``medium``.
    """
    if ruined or not transparency >= BAD_TRANSPARENCY or not seeing_arcsec <= BAD_SEEING_ARCSEC:
        return "bad"
    if spoiled or transparency < MEDIUM_TRANSPARENCY or seeing_arcsec > MEDIUM_SEEING_ARCSEC:
        return "medium"
    return "good"


def classify_measured(row: dict) -> str:
    """The class of a catalogued frame from its ``frame_quality`` measurements."""
    text = row.get("quality_flags")
    flags = text.split(",") if isinstance(text, str) else []
    ruined = bool({"no_stars", "wcs_failed", "elongated"} & set(flags))
    spoiled = bool(row.get("trail_candidates", 0) or row.get("hot_columns", 0))
    transparency = row.get("transparency", math.nan)
    seeing = row.get("seeing_arcsec", math.nan)
    return classify(transparency, seeing, ruined, spoiled)
