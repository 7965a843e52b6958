"""Cross-matching, cross-site zero-point offsets and fusion, against simulated truth."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.science import lightcurves as lc
from telescope_assets.simulate.catalogs import simulate_catalogs
from telescope_assets.simulate.sky import make_sky
from telescope_assets_tests.conftest import SITES, nights


@pytest.fixture(scope="module")
def sky():
    return make_sky(8, stars_per_field=300)


def constant_stars(sky, det):
    constant = set(sky.stars.object_id[sky.stars.var_type == "constant"])
    return det[det.ref_id.isin(constant)]


def test_offsets_recovered_for_sites_with_known_offsets(sky):
    # Eight visits a night: every site sees every field in both filters, so all groups
    # are tied together by common stars.
    det, truth = simulate_catalogs(
        sky, SITES, nights(3), seed=4, offset_sigma=0.05, visits_per_night=8
    )
    det, _ = lc.assign_objects(det, pd.DataFrame(columns=["object_id", "ra", "dec", "ref_id"]))
    stars = constant_stars(sky, det)
    stars = stars[stars.mag_err < 0.03]
    solved = lc.solve_offsets(stars)
    merged = solved.merge(truth, on=["site", "night", "filter"], suffixes=("", "_true"))
    assert len(merged) == len(truth) == 4 * 3 * 2
    # The solution is defined up to one constant per filter (the system of the
    # reference catalogue); compare after removing each filter's mean.
    for _, g in merged.groupby("filter"):
        err = (g.offset - g.offset.mean()) - (g.offset_true - g.offset_true.mean())
        # Offsets of 0.05 mag spread are recovered to a few mmag (measured ≤ 1.5 mmag).
        assert g.offset_true.std() > 0.02
        assert np.abs(err).max() < 0.005
        # ... and the quoted errors are honest (within a factor of three of the truth).
        assert np.sqrt(np.mean(err**2)) < 3 * g.offset_err.median()
    held = lc.held_out_residual(stars)
    assert held["before"] > 0.03
    assert held["after"] < 0.005


def test_detections_become_stable_objects(sky):
    det, _ = simulate_catalogs(sky, SITES, nights(2), seed=5, offset_sigma=0.0)
    # A third of the stars are not in the reference catalogue: matched by position only.
    rng = np.random.default_rng(0)
    truth_id = det.ref_id.copy()
    stars = truth_id.unique()
    missing = set(stars[rng.random(len(stars)) < 0.33])
    det.loc[truth_id.isin(missing), "ref_id"] = ""
    det = det.assign(true_id=truth_id)
    empty = pd.DataFrame(columns=["object_id", "ra", "dec", "ref_id"])
    first_night = det[det.night == det.night.min()]
    out1, new1 = lc.assign_objects(first_night, empty)
    # Every object holds detections of one true star.
    purity = out1.groupby("object_id").true_id.nunique()
    assert (purity == 1).all()
    uncatalogued = new1[new1.ref_id == ""]
    assert uncatalogued.object_id.str.startswith("TA J").all()
    # The second night finds the first night's uncatalogued objects again: no new
    # object for a star already seen.
    second = det[det.night == det.night.max()]
    out2, new2 = lc.assign_objects(second, new1)
    seen = set(out1.true_id)
    assert not set(new2.object_id) & set(new1.object_id)
    again = out2[out2.true_id.isin(seen)]
    by_star = pd.concat([out1, again]).groupby("true_id").object_id.nunique()
    assert (by_star == 1).all()
    # Rerunning the first night against everything known gives the same ids.
    rerun, new_again = lc.assign_objects(first_night, pd.concat([new1, new2]))
    assert len(new_again) == 0
    assert (
        rerun.sort_values("source_id").object_id.to_numpy()
        == out1.sort_values("source_id").object_id.to_numpy()
    ).all()


def test_fused_errors_are_consistent_with_the_scatter():
    rng = np.random.default_rng(1)
    n_obj, n_visits = 300, 4
    true = rng.uniform(14, 19, n_obj)
    rows = []
    for j in range(n_obj):
        for v in range(6):  # six epochs, each seen by up to four sites within 20 minutes
            for s, site in enumerate(list(SITES)[: 1 + (v % n_visits)]):
                err = 0.01 + 0.02 * rng.random()
                rows.append(
                    {
                        "object_id": f"o{j}",
                        "filter": "r",
                        "site": site,
                        "frame_id": f"{site}-{v}",
                        "mjd": 61000 + v + s * 0.005,
                        "mag": true[j] + rng.normal(0, err),
                        "mag_err": err,
                    }
                )
    points = pd.DataFrame(rows)
    fused = lc.fuse(points)
    assert len(fused) == n_obj * 6
    assert set(fused.n_points) == {1, 2, 3, 4}
    pulls = (fused.mag - true[fused.object_id.str[1:].astype(int)]) / fused.mag_err
    # Unit-variance pulls (measured 1.00); the Birge factor never shrinks an error.
    assert 0.9 < pulls.std() < 1.1
    multi = fused[fused.n_points > 1]
    single_err = points.groupby("frame_id").mag_err.median().median()
    assert (multi.mag_err < single_err).mean() > 0.9

    # Two sites that disagree by far more than their errors: the error grows.
    clash = pd.DataFrame(
        {
            "object_id": "x",
            "filter": "r",
            "site": ["a", "b"],
            "frame_id": ["f1", "f2"],
            "mjd": [61000.0, 61000.01],
            "mag": [15.0, 15.2],
            "mag_err": [0.01, 0.01],
        }
    )
    out = lc.fuse(clash)
    assert len(out) == 1
    assert out.mag_err.iloc[0] > 0.05
    # Points without a seeing fuse to NaN; with one, to the mean weighted as the fluxes
    # (inverse variance in flux: 1 / flux² for equal magnitude errors).
    assert np.isnan(out.seeing_arcsec.iloc[0])
    seen = lc.fuse(clash.assign(seeing_arcsec=[2.0, 3.0]))
    weights = 10 ** (0.8 * clash.mag.to_numpy())
    expected = np.average([2.0, 3.0], weights=weights)
    assert seen.seeing_arcsec.iloc[0] == pytest.approx(expected, rel=1e-9)


def test_offsets_applied_with_their_errors():
    points = pd.DataFrame(
        {
            "site": ["a", "b"],
            "night": "n",
            "filter": "r",
            "mag": [15.0, 15.0],
            "mag_err": [0.01, 0.01],
        }
    )
    offsets = pd.DataFrame(
        {"site": ["a"], "night": ["n"], "filter": ["r"], "offset": [0.03], "offset_err": [0.005]}
    )
    out = lc.apply_offsets(points, offsets)
    assert out.mag.tolist() == pytest.approx([14.97, 15.0])
    assert out.mag_err.iloc[0] == pytest.approx(np.hypot(0.01, 0.005))
    assert out.offset_applied.tolist() == [True, False]
    # An offset within 3σ of zero is noise: not applied.
    weak = lc.apply_offsets(points, offsets.assign(offset_err=0.02))
    assert weak.mag.tolist() == [15.0, 15.0]
    assert not weak.offset_applied.any()


def test_tiles_are_healpix_nested():
    import astropy.units as u
    from astropy_healpix import HEALPix

    ra, dec = np.array([142.5, 187.5, 210.0]), np.array([-10.0, -20.0, -5.0])
    tiles = lc.tile_of(ra, dec)
    assert len(set(tiles)) == 3
    assert (tiles >= 0).all()
    assert (tiles < 12 * lc.NSIDE**2).all()
    hp = HEALPix(nside=lc.NSIDE, order="nested")
    lon, lat = hp.healpix_to_lonlat(tiles)
    # Each position lies within one pixel size (0.92°) of its tile's centre.
    dist = np.hypot((lon.to_value(u.deg) - ra) * np.cos(np.radians(dec)), lat.to_value(u.deg) - dec)
    assert (dist < hp.pixel_resolution.to_value(u.deg)).all()


def test_sites_without_common_stars_are_separate_components(sky):
    # Two visits a night: each site-night sees one field per filter, and fields share no
    # stars, so some groups cannot be compared; each component keeps a zero mean.
    det, _ = simulate_catalogs(sky, SITES, nights(2), seed=6, offset_sigma=0.05, visits_per_night=2)
    stars = constant_stars(sky, det.assign(object_id=det.ref_id))
    solved = lc.solve_offsets(stars[stars.mag_err < 0.03], min_stars=1)
    assert solved.component.nunique() > 2
    means = solved.groupby("component").offset.mean()
    assert np.abs(means).max() < 0.02
