import datetime as dt
import warnings

import numpy as np
import pytest
import yaml

from telescope_assets.registry import load_registry
from telescope_assets.science.frames import (
    REASONS,
    FrameError,
    frame_id,
    has_sky_wcs,
    inspect_frame,
)
from telescope_assets.science.nights import night_of
from telescope_assets_tests.badframes import CASES, bad_frames, rewrite
from telescope_assets_tests.conftest import NIGHT, NTT, real_data


def _first(simulated, site, kind="science"):
    frames = simulated["frames"]
    row = frames[(frames.site == site) & (frames.kind == kind)].iloc[0]
    return (simulated["incoming"] / row.filename).read_bytes(), row


def test_standard_dialect_frame_is_described(simulated, registry):
    data, row = _first(simulated, "sidingspring")
    info, _ = inspect_frame(data, registry, "sidingspring")
    assert info.site == "sidingspring"
    assert info.night == NIGHT
    assert info.frame_type == "science"
    assert info.filter == row["filter"]
    assert info.exptime == pytest.approx(row.exptime)
    assert info.frame_id == frame_id(data) == row.frame_id
    assert (info.ny, info.nx) == registry["sidingspring"].camera.shape


def test_maxim_dialect_uint16_sexagesimal_site_from_prefix(simulated, registry):
    data, row = _first(simulated, "lapalma")
    assert b"Light Frame" in data
    assert b"EXPOSURE" in data
    assert b"BZERO" in data
    info, header = inspect_frame(data, registry, "lapalma")
    assert header["BITPIX"] == 16
    assert header["BZERO"] == 32768
    assert info.site == "lapalma"
    assert info.frame_type == "science"
    assert isinstance(header["OBJCTRA"], str)
    assert " " in header["OBJCTRA"]
    from telescope_assets.simulate.sky import FIELDS

    field = next(f for f in FIELDS if f.name == row.field)
    assert info.ra_deg == pytest.approx(field.ra, abs=1e-3)
    assert info.dec_deg == pytest.approx(field.dec, abs=1e-3)


def test_prefix_site_needs_its_folder(simulated, registry):
    data, _ = _first(simulated, "lapalma")
    with pytest.raises(FrameError) as err:
        inspect_frame(data, registry, None)
    assert err.value.reason == "unknown_site"


def test_header_site_must_agree_with_folder(simulated, registry):
    data, _ = _first(simulated, "sutherland")
    with pytest.raises(FrameError) as err:
        inspect_frame(data, registry, "tololo")
    assert err.value.reason == "site_conflict"


@pytest.mark.parametrize("case", CASES)
def test_every_bad_input_has_its_own_reason(simulated, registry, case):
    good, _ = _first(simulated, "sidingspring")
    bad = bad_frames(good)[case]
    with pytest.raises(FrameError) as err:
        inspect_frame(bad, registry, "sidingspring")
    reason, _, detail = case.partition(":")
    assert err.value.reason == reason
    assert detail in err.value.detail
    assert err.value.reason in REASONS
    assert err.value.advice


def test_nan_in_some_pixels_is_rejected(simulated, registry):
    import io

    from astropy.io import fits

    good, _ = _first(simulated, "tololo")  # float32 camera
    pixels = fits.getdata(io.BytesIO(good)).copy()
    pixels[10, 10] = np.nan
    with pytest.raises(FrameError) as err:
        inspect_frame(rewrite(good, data=pixels), registry, "tololo")
    assert err.value.reason == "nan_pixels"


def test_bad_frame_after_site_is_known_keeps_site_and_night(simulated, registry):
    good, _ = _first(simulated, "sidingspring")
    with pytest.raises(FrameError) as err:
        inspect_frame(rewrite(good, FILTER="Halpha"), registry, None)
    assert (err.value.site, err.value.night) == ("sidingspring", NIGHT)


def test_night_is_local_date_at_the_noon_that_starts_it():
    # 23:30 local in Sydney (UTC+11 in March) and 04:00 the next morning: one night.
    evening = dt.datetime(2026, 3, 18, 12, 30, tzinfo=dt.UTC)
    morning = dt.datetime(2026, 3, 18, 17, 0, tzinfo=dt.UTC)
    assert night_of(evening, "Australia/Sydney") == "2026-03-18"
    assert night_of(morning, "Australia/Sydney") == "2026-03-18"
    # Local noon on the 19th starts the next night.
    assert night_of(dt.datetime(2026, 3, 19, 1, 0, tzinfo=dt.UTC), "Australia/Sydney") == (
        "2026-03-19"
    )
    # In Chile (UTC-3) 02:00 UTC is still the evening of the 18th local time.
    assert night_of(dt.datetime(2026, 3, 19, 2, 0, tzinfo=dt.UTC), "America/Santiago") == (
        "2026-03-18"
    )


def test_real_saao_frame_reads_with_its_own_registry_entry(tmp_path):
    """A real camera's frame is described through a registry entry and nothing else."""
    entry = """
sites:
  saao1m:
    latitude: -32.3794
    longitude: 20.8117
    elevation: 1798
    timezone: Africa/Johannesburg
    identify_by: header
    site_keywords: [TELESCOP]
    site_aliases: [SAAO 1.0m]
    camera: {name: STE3, shape: [520, 536], gain: 1.9, read_noise: 5.0, dark_current: 0.0,
             pixel_scale: 0.6, saturation: 60000, bias_level: 0,
             biassec: "[4:13,1:520]", trimsec: "[17:528,1:520]"}
    filters: [V]
    filter_aliases: {"48": V}  # FILTERS = 10*A+B, the wheel positions
    header_map: {imagetyp: IMAGETYP, exptime: EXPTIME, date_obs: DATE-OBS, filter: FILTERS,
                 object: OBJECT, ra: RA, dec: DEC}
    imagetyp_values: {science: [object], bias: [zero], dark: [dark], flat: [flat]}
"""
    path = tmp_path / "sites.yaml"
    path.write_text(entry)
    reg = load_registry(path)
    data = real_data("images", "saao_raw", "a8280271.fits").read_bytes()
    info, _ = inspect_frame(data, reg, None)
    assert info.site == "saao1m"
    assert info.frame_type == "science"
    assert info.exptime == pytest.approx(150.04)
    assert info.night == "2013-07-12"  # local date at the noon before 2013-07-13 00:00 UT
    assert info.ra_deg == pytest.approx(331.0333, abs=1e-3)
    assert info.dec_deg == pytest.approx(-0.9253, abs=1e-3)


def _ntt_registry(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": {"ntt": NTT}}))
    return load_registry(path)


def test_eso_midas_frame_of_1992_reads_with_its_own_registry_entry(tmp_path):
    """Dates as FITS wrote them before 1999 (``dd/mm/yy``), the time in seconds since
    midnight (TM-START), HIERARCH keywords in the header map, MIDAS's log cards."""
    data = real_data("images", "sep", "image.fits").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-standard cards are read without a warning
        info, header = inspect_frame(data, _ntt_registry(tmp_path), "ntt")
    assert info.date_obs == "1992-10-26T03:04:08+00:00"  # '26/10/92' + 11048 s
    assert info.night == "1992-10-25"  # 23:04 at La Silla
    assert info.filter == "R"  # ESO INS OPTI-7 NAME
    assert info.frame_type == "science"
    assert info.ra_deg == pytest.approx(5.6482, abs=1e-3)
    assert not has_sky_wcs(header)  # CTYPEn are blank: pixel axes only
    assert any(str(c).startswith("ESO-LOG") for c in header.cards)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"TM-START": 90000.0}, "not 0-86400 s"),
        ({"TM-START": ""}, "DATE-OBS holds no time"),
        ({"DATE-OBS": "32/10/92"}, "DATE-OBS"),
    ],
)
def test_bad_old_style_dates_are_named(tmp_path, changes, why):
    data = real_data("images", "sep", "image.fits").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy on MIDAS's log cards, writing them back
        bad = rewrite(data, **changes)
    with pytest.raises(FrameError, match=why) as err:
        inspect_frame(bad, _ntt_registry(tmp_path), "ntt")
    assert err.value.reason in ("bad_date_obs", "missing_keyword")


def test_sky_wcs_is_told_from_linear_axes():
    from astropy.io import fits

    sky = fits.Header({"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP"})
    linear = fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR"})
    blank = fits.Header({"CTYPE1": "", "CTYPE2": "", "CRVAL1": 1.0})
    galactic = fits.Header({"CTYPE1": "GLON-CAR", "CTYPE2": "GLAT-CAR"})
    one_axis = fits.Header({"CTYPE1": "RA---TAN"})
    assert [has_sky_wcs(h) for h in (sky, linear, blank, galactic, one_axis)] == [
        True, False, False, True, False,
    ]  # fmt: skip
