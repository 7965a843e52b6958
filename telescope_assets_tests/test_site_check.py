"""``telescope-site check`` on real frames: what a site owner sees before the first night."""

import io

import pytest
import yaml
from astropy.io import fits

from telescope_assets.registry import load_registry
from telescope_assets.registry.check import check_frames, main
from telescope_assets.science.frames import FrameError, inspect_frame
from telescope_assets_tests.conftest import SAAO, real_data


def _registry(tmp_path, **changes):
    entry = {**SAAO, **changes}
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": {"saao": entry}}))
    return path


def test_saao_archive_frame_needs_first_night_and_then_passes(tmp_path, capsys):
    frame = str(real_data("images", "saao_raw", "a8280271.fits"))
    assert main(["check", str(_registry(tmp_path)), frame]) == 1
    out = capsys.readouterr().out
    assert "night 2013-07-12 is before the partitions' first night 2025-01-01" in out
    assert "0 of 1 frames would be accepted" in out

    path = _registry(tmp_path, first_night="2013-07-01")
    assert main(["check", str(path), frame, "--lake", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # DATE-OBS holds the date alone; UT gives the time (00:57:33, the night of the 12th).
    assert "date_obs 2013-07-13T00:57:33+00:00" in out
    assert "night 2013-07-12" in out
    assert "filter V" in out
    assert "no header WCS: solved from the header's pointing" in out
    assert "no reference catalogue at refcat/rf0420.parquet" in out


def test_wrong_camera_sections_and_shape_are_named(tmp_path):
    frame = real_data("images", "saao_raw", "a8280271.fits")
    camera = {**SAAO["camera"], "shape": [520, 528], "trimsec": "[1:512,1:520]"}
    reg = load_registry(_registry(tmp_path, first_night="2013-01-01", camera=camera))
    (report,) = check_frames(reg, [frame])
    assert report.reason == "bad_dimensions"
    assert any("camera.shape is [520, 528], the frame is [520, 536]" in p for p in report.problems)
    assert any("camera.trimsec is '[1:512,1:520]'" in p for p in report.problems)


def test_a_frame_without_a_filter_takes_the_site_default(tmp_path):
    with fits.open(real_data("images", "saao_raw", "a8280271.fits")) as hdul:
        hdul[0].header.remove("FILTERS")
        buf = io.BytesIO()
        hdul.writeto(buf)
    data = buf.getvalue()
    reg = load_registry(_registry(tmp_path, first_night="2013-01-01"))
    with pytest.raises(FrameError, match="sets default_filter") as exc:
        inspect_frame(data, reg)
    assert exc.value.reason == "missing_keyword"
    reg = load_registry(_registry(tmp_path, first_night="2013-01-01", default_filter="V"))
    info, _ = inspect_frame(data, reg)
    assert info.filter == "V"


def test_feder_frames_and_a_registry_that_does_not_load(tmp_path, capsys):
    feder = {
        **SAAO,
        "latitude": 46.867, "longitude": -96.453, "elevation": 311,
        "timezone": "America/Chicago", "site_keywords": ["TELESCOP"], "site_aliases": ["Feder"],
        "first_night": "2012-01-01",
        "camera": {"name": "Apogee Alta", "shape": [100, 100], "gain": 1.5, "read_noise": 10,
                   "pixel_scale": 0.56, "saturation": 65000},
        "filters": ["r"], "filter_aliases": {"R": "r"},
        "header_map": {"imagetyp": "IMAGETYP", "exptime": "EXPOSURE", "date_obs": "DATE-OBS",
                       "filter": "FILTER", "object": "OBJECT", "ra": "OBJCTRA",
                       "dec": "OBJCTDEC"},
        "imagetyp_values": {"science": ["LIGHT"], "bias": ["BIAS"], "dark": ["DARK"],
                            "flat": ["FLAT"]},
    }  # fmt: skip
    path = tmp_path / "feder.yaml"
    path.write_text(yaml.safe_dump({"sites": {"feder": feder}}))
    frames = [str(real_data("images", "feder_bias", f"biastest{i}.fit")) for i in (1, 2)]
    assert main(["check", str(path), *frames]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 frames would be accepted; types {'bias': 2}; nights {'2012-02-05': 2}" in out

    path.write_text(yaml.safe_dump({"sites": {"feder": {**feder, "filters": ["Halpha"]}}}))
    assert main(["check", str(path), *frames]) == 2
    assert "no extinction for filter 'Halpha'" in capsys.readouterr().err
