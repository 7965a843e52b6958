"""MPC 80-column lines read back by their columns, as the Minor Planet Center reads them."""

import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import Angle
from astropy.time import Time

from telescope_assets.science import mpc


@pytest.mark.parametrize(
    ("ra", "dec", "mjd", "mag"),
    [
        (0.001, -0.5, 61117.0, 16.04),
        (359.9999, 89.99, 61117.999999, 21.0),
        (187.5, -20.25, 61118.4, np.nan),
    ],
)
def test_a_line_reads_back_by_its_columns(ra, dec, mjd, mag):
    line = mpc.observation_line("T320L4U", mjd, ra, dec, mag, "r", "807")
    assert len(line) == 80
    assert line[5:12] == "T320L4U"
    assert line[14] == "C"
    year, month, day = line[15:32].split()
    start = Time(f"{year}-{month}-{int(float(day)):02d}", scale="utc").mjd
    assert start + float(day) % 1 == pytest.approx(mjd, abs=1e-5)
    got_ra = Angle(line[32:44].strip().replace(" ", ":"), unit="hourangle").degree
    got_dec = Angle(line[44:56].strip().replace(" ", ":"), unit="deg").degree
    assert abs((got_ra - ra + 180) % 360 - 180) * 3600 * np.cos(np.radians(dec)) < 0.16
    assert abs(got_dec - dec) * 3600 < 0.06
    assert line[56:65].strip() == ""
    assert line[65:70].strip() == ("" if np.isnan(mag) else f"{mag:.1f}")
    assert line[70] == ("r" if np.isfinite(mag) else " ")
    assert line[71:77].strip() == ""
    assert line[77:80] == "807"


def test_a_report_has_its_header_and_one_line_per_observation_by_object_and_time():
    obs = pd.DataFrame(
        {
            "designation": ["TB", "TA", "TA"],
            "mjd": [61117.3, 61117.2, 61117.1],
            "ra": [150.0, 151.0, 151.1],
            "dec": [2.0, 2.1, 2.2],
            "mag": [18.0, 19.0, 19.1],
            "band": ["g", "r", "r"],
        }
    )
    text = mpc.report(obs, "950", "an observer", "0.4 m telescope")
    lines = text.splitlines()
    assert lines[0] == "COD 950"
    body = [line for line in lines if len(line) == 80]
    assert [line[5:12].strip() for line in body] == ["TA", "TA", "TB"]
    assert body[0][15:32] < body[1][15:32]  # the earlier first
    assert len(lines) == 5 + 3


def test_designations_are_stable_short_and_alphanumeric():
    names = {mpc.designation(f"TK{i}") for i in range(2000)}
    assert len(names) == 2000
    assert all(len(n) == 7 and n.isalnum() for n in names)
    assert mpc.designation("TKabc") == mpc.designation("TKabc")
