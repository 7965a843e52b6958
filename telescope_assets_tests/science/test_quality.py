"""science.quality: one set of cuts for the simulator's truth and the pipeline's class."""

import math

import pytest

from telescope_assets.science import quality
from telescope_assets.science.quality import classify, classify_measured
from telescope_assets.simulate.network import quality_class
from telescope_assets.simulate.render import Conditions

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("transparency", "seeing", "expected"),
    [
        (0.95, 1.5, "good"),
        (0.80, 1.5, "medium"),  # thin cloud
        (0.95, 3.0, "medium"),  # poor seeing
        (0.40, 1.5, "bad"),  # clouds
        (0.95, 4.0, "bad"),  # very poor seeing
        (math.nan, 1.5, "bad"),  # no zero point: nothing says the sky was clear
        (0.95, math.nan, "bad"),  # no stars to measure the seeing
    ],
)
def test_the_cuts(transparency, seeing, expected):
    assert classify(transparency, seeing, ruined=False, spoiled=False) == expected


def test_defects_ruin_or_spoil_a_clear_frame():
    assert classify(0.95, 1.5, ruined=True, spoiled=False) == "bad"
    assert classify(0.95, 1.5, ruined=False, spoiled=True) == "medium"


def _simulated(transparency, seeing, flags=()):
    return Conditions(transparency=transparency, seeing_arcsec=seeing, flags=list(flags))


@pytest.mark.parametrize(
    ("transparency", "seeing", "sim_flags", "measured"),
    [
        (0.95, 1.5, (), {}),
        (0.70, 1.5, (), {}),
        (0.95, 3.0, (), {}),
        (0.30, 1.5, ("clouds",), {"quality_flags": "clouds"}),
        (0.95, 1.5, ("tracking",), {"quality_flags": "elongated"}),
        (0.95, 1.5, ("satellite_trail",), {"trail_candidates": 2}),
        (0.95, 1.5, ("hot_pixels",), {"hot_columns": 1}),
    ],
)
def test_truth_and_measurement_give_one_class_for_one_frame(
    transparency, seeing, sim_flags, measured
):
    truth = quality_class(_simulated(transparency, seeing, sim_flags))
    row = {"transparency": transparency, "seeing_arcsec": seeing, **measured}
    assert classify_measured(row) == truth


def test_flag_thresholds_are_the_class_cuts():
    assert quality.BAD_TRANSPARENCY < quality.MEDIUM_TRANSPARENCY
    assert quality.MEDIUM_SEEING_ARCSEC < quality.BAD_SEEING_ARCSEC
    assert classify_measured({"transparency": 0.95, "seeing_arcsec": 1.5}) == "good"
    assert classify_measured({"quality_flags": "no_stars"}) == "bad"
