"""Reference catalogues from Gaia exports, checked against a real DECam frame's calibration."""

import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from telescope_assets.lake import Lake
from telescope_assets.registry.check import main
from telescope_assets.science.refcat import MAG_FLOOR, from_gaia, read_tables
from telescope_assets_tests.conftest import real_data

DECAM = ("images", "decam")
CHUNKS = [real_data(*DECAM, f"chunk-{n}.fits") for n in ("03458", "03459", "03586")]
IMAGE = real_data(*DECAM, "c4d_170316_062107_ooi_z_ls9.N2.fits")


def _gaia(**columns):
    base = {
        "source_id": [1, 2, 3],
        "ra": [10.0, 10.0, 10.0],
        "dec": [60.0, 60.0, 60.0],
        "phot_g_mean_mag": [15.0, 16.0, 17.0],
        "phot_bp_mean_mag": [15.5, np.nan, 20.0],
        "phot_rp_mean_mag": [14.5, 15.5, 15.0],
    }
    return pd.DataFrame({**base, **columns})


def test_proper_motions_colours_and_flags():
    gaia = _gaia(
        pmra=[1000.0, np.nan, 0.0],  # mas/yr, cos(dec) included
        pmdec=[-500.0, np.nan, 0.0],
        ref_epoch=[2016.0] * 3,
        phot_g_mean_flux_over_error=[1000.0, 100.0, 10.0],
        phot_variable_flag=["VARIABLE", b"NOT_AVAILABLE", "CONSTANT"],
    )
    cat = from_gaia(gaia, ["r", "z"], epoch=2026.0)
    # Ten years: 10" east (0.00556° of RA at 60°), 5" south.
    assert cat.dec.iloc[0] == pytest.approx(60.0 - 5 / 3600, abs=1e-9)
    assert cat.ra.iloc[0] == pytest.approx(10.0 + 10 / 3600 / np.cos(np.radians(cat.dec[0])))
    assert cat.ra.iloc[1] == 10.0  # no proper motion known: none applied
    # BP-RP 1.0: r - G = -0.1156 (the polynomial's coefficients summed by hand); no
    # colour, or one out of the fit's range (5.0): no magnitude.
    assert cat.r.iloc[0] == pytest.approx(15.0 - 0.1156, abs=1e-3)
    assert np.isnan(cat.r.iloc[1])
    assert np.isnan(cat.z.iloc[2])
    assert cat.r_err.iloc[0] == pytest.approx(np.hypot(1.0857 / 1000, MAG_FLOOR), rel=1e-3)
    assert cat.variable.tolist() == [True, False, False]
    assert cat.source_id.tolist() == ["1", "2", "3"]
    assert "gaia_g" in cat
    assert "G" not in cat  # it would pass for a site's filter g


def test_bad_exports_are_named():
    with pytest.raises(ValueError, match=r"no Gaia transformation for bands \['V'\]"):
        from_gaia(_gaia(), ["V"])
    with pytest.raises(ValueError, match="lacks columns"):
        from_gaia(_gaia().drop(columns="phot_bp_mean_mag"), ["r"])
    with pytest.raises(ValueError, match="ref_epoch"):
        from_gaia(_gaia(pmra=[0.0] * 3, pmdec=[0.0] * 3), ["r"], epoch=2026.0)


def _decam():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(IMAGE) as hdul:
            return hdul[1].data.astype(float), WCS(hdul[1].header), hdul[0].header


def test_gaia_z_agrees_with_the_decam_frames_own_calibration(tmp_path, capsys):
    """The DECam z frame's zero point (MAGZPT, from Pan-STARRS by the DECam Community
    Pipeline) against z from Gaia, on the Gaia stars that fall on the frame."""
    assert main(["refcat", "DECaLS_25440_z", *map(str, CHUNKS), "--bands", "z",
                 "--epoch", "2017.2", "--lake", str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "149 Gaia sources" in out
    cat = Lake(str(tmp_path)).read_parquet("refcat/DECaLS_25440_z.parquet")
    assert len(cat) == len(read_tables(CHUNKS)) == 149

    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture
    from photutils.centroids import centroid_sources

    image, wcs, header = _decam()
    x, y = wcs.all_world2pix(cat.ra, cat.dec, 0)
    on = (x > 12) & (x < image.shape[1] - 12) & (y > 12) & (y < image.shape[0] - 12)
    assert on.sum() == 3
    # Positions: each star's centroid within 1 px (0.26") of its Gaia position.
    cx, cy = centroid_sources(image - np.median(image), x[on], y[on], box_size=7)
    assert np.hypot(cx - x[on], cy - y[on]).max() < 1.0
    # Photometry: 10 px radius (2.7 FWHM), local sky from an annulus.
    positions = np.c_[cx, cy]
    sky = ApertureStats(image, CircularAnnulus(positions, 18, 25)).median
    aperture = CircularAperture(positions, 10)
    flux = ApertureStats(image, aperture).sum - sky * aperture.area
    theirs = header["MAGZPT"] - 2.5 * np.log10(flux / header["EXPTIME"])
    diff = theirs - cat.z[on].to_numpy()
    print(f"z(frame) - z(Gaia): {np.round(diff, 3)}, mean {diff.mean():+.3f}")
    # Three faint stars (z 16.6-19.2; 0.05-0.1 mag each): the mean within 0.1 mag.
    assert abs(diff.mean()) < 0.1
    assert np.abs(diff).max() < 0.25
