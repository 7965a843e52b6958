"""``telescope-ingest``: a folder of frames through the pipeline without the daemon.

The frame is the ESO NTT/EMMI image of SExtractor's tests (1992, reduced by ESO-MIDAS,
no sky WCS, no reference catalogue for its field): a new site's entry, one command, and
it reaches a catalog, in the instance's run history like a sensor's run.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial import cKDTree

from telescope_assets.defs.partitions import site_night_key
from telescope_assets.lake import Lake
from telescope_assets_tests.conftest import NTT, SAAO, real_data

REPO = Path(__file__).resolve().parents[1]


def _environment(tmp_path, mlflow, sites: dict) -> dict:
    """A new deployment's environment: its instance, registry, lake and drop zone."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump({"sites": sites}))
    return {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "TELESCOPE_ASSETS_REGISTRY": str(tmp_path / "sites.yaml"),
        "TELESCOPE_LAKE_URL": str(tmp_path / "lake"),
        "TELESCOPE_INCOMING_URL": str(tmp_path / "incoming"),
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        "TELESCOPE_MLFLOW_ARTIFACTS": mlflow.artifact_root,
        "TELESCOPE_DASK_WORKERS": "1",
    }


def _ingest(tmp_path, env, *args) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "telescope-ingest"), *map(str, args)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    print(done.stdout, done.stderr[-3000:])
    return done


def test_an_archive_frame_of_a_new_site_is_ingested_and_catalogued(
    tmp_path, monkeypatch, mlflow_champions
):
    env = _environment(tmp_path, mlflow_champions, {"ntt": NTT})
    frame = real_data("images", "sep", "image.fits")
    done = _ingest(tmp_path, env, "--site", "ntt", frame)
    assert done.returncode == 0
    assert "ingested: 1 accepted, 0 duplicates, 0 quarantined" in done.stdout
    assert "1 runs of frames_job" in done.stdout

    lake = Lake(str(tmp_path / "lake"))
    # DATE-OBS '26/10/92' (the FITS form before 1999), TM-START 11048 s: 03:04:08 UT,
    # 23:04 at La Silla on the 25th.
    raw = lake.read_parquet(lake.manifest("raw_frames", "ntt", "1992-10-25"))
    assert len(raw) == 1
    assert pd.Timestamp(raw.date_obs.iloc[0]) == pd.Timestamp("1992-10-26T03:04:08Z")
    assert raw["filter"].iloc[0] == "R"
    cal = lake.read_parquet(lake.manifest("calibrated_frames", "ntt", "1992-10-25"))
    assert cal.status.tolist() == ["calibrated"]
    catalogs = lake.read_parquet(lake.manifest("source_catalogs", "ntt", "1992-10-25"))
    (row,) = catalogs.itertuples()
    # No reference catalogue covers the field: sources, but no WCS nor zero point.
    # 45 sources since detection keeps its S/N depth with a kernel broader than 2 px (the
    # registry's default seeing is 4.3 px here); 23 before.
    assert row.n_sources >= 40
    assert "no_reference_catalog" in row.quality_flags
    assert not row.wcs_ok
    # Against SExtractor's catalogue of the image (65 objects, pixel centres from 1):
    # every source is one of its objects, and 19 of its 20 brightest are found. All but
    # one lie within 1.5 px of its position; that one (1.8 px, FWHM 2.6 px) is a blend
    # that SExtractor splits differently.
    sources = lake.read_parquet(row.catalog_path)
    theirs = np.loadtxt(real_data("images", "sep", "image.cat"))
    distance, nearest = cKDTree(theirs[:, 1:3] - 1).query(np.c_[sources.x, sources.y])
    assert (distance >= 1.5).sum() <= 1
    assert (distance < 2.0).all()
    assert len(np.unique(nearest)) == len(nearest)  # no object found twice
    brightest = np.argsort(-theirs[:, 15])[:20]  # FLUX_AUTO
    assert np.isin(brightest, nearest).sum() >= 19
    # Airmass from the site, the time and the header's pointing (RA 5.648°, Dec -30.18°,
    # local sidereal time 0.67 h: 4° from the meridian, 1° from the zenith).
    assert 1.0 <= row.airmass < 1.01

    monkeypatch.chdir(tmp_path)  # the instance's storage is data/dagster, from here
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    runs = instance.get_runs()
    frames_runs = [r for r in runs if r.job_name == "frames_job"]
    assert [r.status for r in frames_runs] == [dg.DagsterRunStatus.SUCCESS]
    assert frames_runs[0].tags["telescope/launched_by"] == "telescope-ingest"
    assert frames_runs[0].tags["dagster/partition"] == "1992-10-25|ntt"
    # Asked for by the deployment's own sensors, evaluated through Dagster's API, and
    # tagged as the daemon tags the runs it launches.
    assert frames_runs[0].tags["dagster/sensor_name"] == "new_frames"
    nightly = [r for r in runs if r.job_name == "nightly_job"]
    assert [r.tags["dagster/sensor_name"] for r in nightly] == ["nightly_reports"]
    assert nightly[0].tags["dagster/run_key"].startswith("nightly:1992-10-25:")

    # Nothing is processed twice: the same file again is a duplicate; its partition's
    # run (requested in case a crash lost the first) finds nothing stale to redo.
    products = {
        p: p.stat().st_mtime_ns
        for folder in ("calibrated", "catalogs")
        for p in (tmp_path / "lake" / folder).rglob("*")
    }
    assert len(products) >= 4
    again = _ingest(tmp_path, env, "--site", "ntt", frame)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ingested: 0 accepted, 1 duplicates, 0 quarantined" in again.stdout
    assert {
        p: p.stat().st_mtime_ns
        for folder in ("calibrated", "catalogs")
        for p in (tmp_path / "lake" / folder).rglob("*")
    } == products


#: DECam on the Blanco 4 m at Cerro Tololo: one CCD (N2) of a Community Pipeline
#: "InstCal" frame (reduced: precalibrated), cut to 245 x 251 pixels.
DECAM = {
    "description": "CTIO Blanco 4 m, DECam CCD N2 (Community Pipeline InstCal cutout)",
    "latitude": -30.16606,
    "longitude": -70.81489,
    "elevation": 2215,
    "timezone": "America/Santiago",
    "site_keywords": ["OBSERVAT"],
    "site_aliases": ["CTIO"],
    "camera": {
        "name": "DECam-N2",
        "shape": [251, 245],
        "gain": 3.87,
        "read_noise": 6.0,
        "pixel_scale": 0.262,
        "saturation": 45791,
    },
    "filters": ["z"],
    "filter_aliases": {"z DECam SDSS c0004 9260.0 1520.0": "z"},
    "first_night": "2017-03-01",
    "precalibrated": True,
    "header_map": {
        "imagetyp": "OBSTYPE",
        "exptime": "EXPTIME",
        "date_obs": "DATE-OBS",
        "filter": "FILTER",
        "object": "OBJECT",
        "ra": "RA",
        "dec": "DEC",
    },
    "imagetyp_values": {
        "science": ["object"],
        "bias": ["zero"],
        "dark": ["dark"],
        "flat": ["dome flat"],
    },
}


def test_a_decam_frame_with_a_gaia_catalogue_gets_its_zero_point(tmp_path, mlflow_champions):
    from telescope_assets.registry.check import main as site_main

    env = _environment(tmp_path, mlflow_champions, {"decam": DECAM})
    folder = real_data("images", "decam")
    chunks = sorted(str(p) for p in folder.glob("chunk-*.fits"))
    assert (
        site_main(
            [
                "refcat",
                "DECaLS_25440_z",
                *chunks,
                "--registry",
                str(tmp_path / "sites.yaml"),
                "--site",
                "decam",
                "--epoch",
                "2017.2",
                "--lake",
                str(tmp_path / "lake"),
            ]
        )
        == 0
    )
    frame = folder / "c4d_170316_062107_ooi_z_ls9.N2.fits"
    done = _ingest(tmp_path, env, frame)
    assert done.returncode == 0  # the nightly report too (a frame too small to score)
    lake = Lake(str(tmp_path / "lake"))
    assert lake.exists("reports/2017-03-15/report.html")
    catalogs = lake.read_parquet(lake.manifest("source_catalogs", "decam", "2017-03-15"))
    (row,) = catalogs.itertuples()
    assert row.n_sources >= 5
    # The header: AIRMASS 1.8, ZD 56.41° (sec z 1.808); from the site, time and WCS: 1.812.
    assert row.airmass == pytest.approx(1.808, abs=0.01)
    # Three Gaia stars fall on this 1' cutout: too few to refit the WCS (8) or to fit a
    # zero point (5), but enough to confirm the header's TPV WCS, which is kept.
    assert "wcs_verified" in row.quality_flags
    assert "wcs_failed" not in row.quality_flags
    assert row.wcs_ok
    assert row.n_astrometric_stars == 3
    assert row.astrometric_rms_arcsec < 0.3
    assert np.isnan(row.zero_point)
    # That WCS, carried through calibration, puts the stars on their Gaia positions.
    sources = lake.read_parquet(row.catalog_path)
    gaia = lake.read_parquet("refcat/DECaLS_25440_z.parquet")
    cos = np.cos(np.radians(gaia.dec.mean()))
    found = cKDTree(np.c_[sources.ra * cos, sources.dec]).query(np.c_[gaia.ra * cos, gaia.dec])
    near = found[0] * 3600 < 0.5
    assert near.sum() == 3


def test_a_raw_archive_frame_without_its_masters_is_ingested_and_catalogued(
    tmp_path, mlflow_champions
):
    """The SAAO frame of 2013: raw, with an overscan strip, its bias and flat frames lost."""
    import ccdproc
    from astropy.nddata import CCDData

    entry = {**SAAO, "first_night": "2013-07-01", "precalibrated": True}
    env = _environment(tmp_path, mlflow_champions, {"saao": entry})
    frame = real_data("images", "saao_raw", "a8280271.fits")
    done = _ingest(tmp_path, env, "--site", "saao", frame)
    assert done.returncode == 0
    assert "ingested: 1 accepted, 0 duplicates, 0 quarantined" in done.stdout
    lake = Lake(str(tmp_path / "lake"))
    cal = lake.read_parquet(lake.manifest("calibrated_frames", "saao", "2013-07-12"))
    assert cal.status.tolist() == ["calibrated"]
    # The overscan is subtracted row by row and the frame trimmed, as ccdproc does it.
    raw = CCDData.read(frame, unit="adu")
    expected = ccdproc.trim_image(
        ccdproc.subtract_overscan(raw, fits_section="[4:13,1:520]", median=True, overscan_axis=1),
        fits_section="[17:528,1:520]",
    )
    with lake.read_fits(cal.path.iloc[0]) as hdul:
        sci, mask = hdul["SCI"].data.astype(float), hdul["MASK"].data
    good = mask == 0
    np.testing.assert_allclose(sci[good], 1.9 * expected.data[good], rtol=1e-6, atol=1e-3)
    catalogs = lake.read_parquet(lake.manifest("source_catalogs", "saao", "2013-07-12"))
    (row,) = catalogs.itertuples()
    assert row.n_sources >= 20
    # No reference catalogue covers rf0420 here: no WCS refit and no zero point, said so.
    assert "no_reference_catalog" in row.quality_flags
    assert not row.wcs_ok
    assert np.isnan(row.zero_point)
    # Airmass from the site, the time and the header's pointing (no WCS, no AIRMASS).
    assert 1.0 <= row.airmass < 3.0


def test_a_sensor_request_that_already_ran_is_not_run_again(tmp_path):
    """The daemon's rule: a run key of a sensor is run once, whoever launched it."""
    from telescope_assets.definitions import defs
    from telescope_assets.headless import SensorRuns

    instance = dg.DagsterInstance.ephemeral()
    tags = {"dagster/sensor_name": "nightly_reports", "dagster/run_key": "nightly:2026-03-18:5"}
    instance.add_run(dg.DagsterRun(job_name="nightly_job", run_id=str(uuid.uuid4()), tags=tags))
    runs = SensorRuns(defs, instance, "a test")
    assert runs.already_ran("nightly_reports", "nightly:2026-03-18:5")
    assert not runs.already_ran("new_alerts", "nightly:2026-03-18:5")
    assert not runs.already_ran("nightly_reports", "nightly:2026-03-18:6")
    request = dg.RunRequest(run_key="nightly:2026-03-18:5", partition_key="2026-03-18")
    assert runs.execute("nightly_reports", request, label="nightly 2026-03-18") is None
    assert len(instance.get_runs()) == 1
    assert runs.failed == []


def test_frames_requests_are_merged_per_partition_in_night_order():
    from telescope_assets.headless import _one_per_partition

    def request(batch, site, night):
        key = site_night_key(site, night)
        tags = {"telescope/batch": batch, "telescope/partition": f"{site}|{night}"}
        return dg.RunRequest(run_key=f"{batch}:{site}:{night}", partition_key=key, tags=tags)

    merged = _one_per_partition(
        [
            request("b1", "siding", "2026-03-19"),
            request("b1", "teide", "2026-03-18"),
            request("b2", "siding", "2026-03-19"),
            request("b2", "siding", "2026-03-18"),
        ]
    )
    assert [(r.tags["telescope/partition"], r.tags["telescope/batch"]) for r in merged] == [
        ("siding|2026-03-18", "b2"),
        ("teide|2026-03-18", "b1"),
        ("siding|2026-03-19", "b1,b2"),
    ]
