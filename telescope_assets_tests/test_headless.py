"""``telescope-ingest``: a folder of frames through the pipeline without the daemon.

The frame is the ESO NTT/EMMI image of SExtractor's tests (1992, reduced by ESO-MIDAS,
no sky WCS, no reference catalogue for its field): a new site's entry, one command, and
it reaches a catalog, in the instance's run history like a sensor's run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import yaml
from scipy.spatial import cKDTree

from telescope_assets.lake import Lake
from telescope_assets_tests.conftest import NTT, real_data

REPO = Path(__file__).resolve().parents[1]


def test_an_archive_frame_of_a_new_site_is_ingested_and_catalogued(
    tmp_path, monkeypatch, mlflow_champions
):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump({"sites": {"ntt": NTT}}))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "TELESCOPE_ASSETS_REGISTRY": str(tmp_path / "sites.yaml"),
        "TELESCOPE_LAKE_URL": str(tmp_path / "lake"),
        "TELESCOPE_INCOMING_URL": str(tmp_path / "incoming"),
        "MLFLOW_TRACKING_URI": mlflow_champions.tracking_uri,
        "TELESCOPE_MLFLOW_ARTIFACTS": mlflow_champions.artifact_root,
        "TELESCOPE_DASK_WORKERS": "1",
    }
    command = [str(Path(sys.executable).parent / "telescope-ingest"), "--site", "ntt"]
    frame = real_data("images", "sep", "image.fits")
    done = subprocess.run(
        [*command, str(frame)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    print(done.stdout, done.stderr[-3000:])
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
    assert row.n_sources >= 20
    assert "no_reference_catalog" in row.quality_flags
    assert not row.wcs_ok
    # Against SExtractor's catalogue of the image (65 objects, pixel centres from 1):
    # every source is one of its objects, and 19 of its 20 brightest are found.
    sources = lake.read_parquet(row.catalog_path)
    theirs = np.loadtxt(real_data("images", "sep", "image.cat"))
    distance, nearest = cKDTree(theirs[:, 1:3] - 1).query(np.c_[sources.x, sources.y])
    assert (distance < 1.5).all()
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

    # Nothing is processed twice: the same file again is a duplicate; its partition's
    # run (requested in case a crash lost the first) finds nothing stale to redo.
    products = {
        p: p.stat().st_mtime_ns
        for folder in ("calibrated", "catalogs")
        for p in (tmp_path / "lake" / folder).rglob("*")
    }
    assert len(products) >= 4
    again = subprocess.run(
        [*command, str(frame)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ingested: 0 accepted, 1 duplicates, 0 quarantined" in again.stdout
    assert {
        p: p.stat().st_mtime_ns
        for folder in ("calibrated", "catalogs")
        for p in (tmp_path / "lake" / folder).rglob("*")
    } == products
