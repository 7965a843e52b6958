"""Shared fixtures: a small registry, one simulated night, lakes and resources in tmp_path."""

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest

from telescope_assets.lake import Lake, Store
from telescope_assets.registry import load_registry
from telescope_assets.resources import (
    DaskResource,
    IncomingResource,
    LakeResource,
    RegistryResource,
)
from telescope_assets.simulate.network import SimulationConfig, simulate_network

#: The shared real observations: ``../shared/data/real`` beside the checkout, or elsewhere
#: through TELESCOPE_REAL_DATA.
REAL = Path(
    os.environ.get("TELESCOPE_REAL_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
)
NIGHT = "2026-03-18"
#: The light-curve tests' network: site and longitude (degrees east).
SITES = {"lapalma": -17.9, "tololo": -70.8, "sidingspring": 149.1, "sutherland": 20.8}


def nights(n: int, start: str = "2026-03-18") -> list[str]:
    """``n`` consecutive nights from ``start``."""
    import datetime as dt

    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=d)).isoformat() for d in range(n)]


# Sensors evaluated in tests glance once: a watch (ops/watch.py) would hold every empty
# tick for seconds. The watch's own tests and the acceptance test's deployed stack set it.
os.environ.setdefault("TELESCOPE_SENSOR_WATCH_SECONDS", "0")


def real_data(*parts: str) -> Path:
    """Path to a file of the shared real data (never skipped: CI has them beside the repo)."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: put the shared real data beside the checkout "
            "(../shared/data/real) or point TELESCOPE_REAL_DATA at them"
        )
    return path


def real_image(*parts: str):
    """The primary image of a shared real file, as float (header warnings silenced:
    the ESO image's non-standard ESO-LOG cards are irrelevant to its pixels)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        return fits.getdata(real_data(*parts)).astype(float)


#: SAAO 1.0 m, STE3 CCD: the raw archive frame of shared/data/real (2013, with overscan).
SAAO = {
    "description": "SAAO 1.0 m, STE3 CCD (archive frames from 2013)",
    "latitude": -32.3794, "longitude": 20.8117, "elevation": 1798,
    "timezone": "Africa/Johannesburg",
    "site_keywords": ["OBSERVAT"], "site_aliases": ["SAAO"],
    "camera": {
        "name": "STE3", "shape": [520, 536], "gain": 1.9, "read_noise": 5.0,
        "pixel_scale": 0.31, "saturation": 60000,
        "biassec": "[4:13,1:520]", "trimsec": "[17:528,1:520]",
    },
    "filters": ["V"],
    "filter_aliases": {"48": "V"},  # FILTERS = 10*A+B: wheel A slot 4, wheel B slot 8
    "header_map": {
        "imagetyp": "IMAGETYP", "exptime": "EXPTIME", "date_obs": "DATE-OBS",
        "time_obs": "UT", "filter": "FILTERS", "object": "OBJECT", "ra": "RA", "dec": "DEC",
    },
    "imagetyp_values": {
        "science": ["object"], "bias": ["zero", "bias"], "dark": ["dark"], "flat": ["flat"],
    },
}  # fmt: skip

#: ESO's New Technology Telescope at La Silla, as a site owner would enter it: the site
#: of the ESO image in images/sep (1992, reduced by ESO-MIDAS, no sky WCS).
NTT = {
    "description": "ESO NTT 3.6 m, EMMI red arm (archive frames reduced by ESO-MIDAS)",
    "latitude": -29.2584, "longitude": -70.7345, "elevation": 2375,
    "timezone": "America/Santiago",
    "identify_by": "prefix",
    "camera": {"name": "EMMI", "shape": [256, 256], "gain": 1.0, "read_noise": 5.0,
               "pixel_scale": 0.35, "saturation": 60000},
    "filters": ["R"],
    "first_night": "1992-10-01",
    "precalibrated": True,
    "header_map": {
        "imagetyp": "ESO GEN EXPO TYPE", "exptime": "EXPTIME", "date_obs": "DATE-OBS",
        "time_obs": "TM-START", "filter": "ESO INS OPTI-7 NAME", "object": "OBJECT",
        "ra": "RA", "dec": "DEC",
    },
    "imagetyp_values": {"science": ["SCI"], "bias": ["BIAS"], "dark": ["DARK"],
                        "flat": ["FF"]},
}  # fmt: skip


def ephemeral_instance(folder):
    """An in-memory Dagster instance with its artifact folder in ``folder``.

    Without one, Dagster makes a TemporaryDirectory that the garbage collector removes
    later, warning (an error here) in whichever test happens to be running then.
    """
    import dagster as dg

    return dg.DagsterInstance.ephemeral(tempdir=str(Path(folder) / "dagster_instance"))


def small_registry():
    """The packaged registry with every camera shrunk to about 256² pixels for speed."""
    reg = load_registry()
    for site in reg.names:
        cam = reg[site].camera
        if cam.biassec:
            reg = reg.with_camera(
                site, shape=(256, 280), biassec="[261:276,1:256]", trimsec="[1:256,1:256]"
            )
        else:
            reg = reg.with_camera(site, shape=(256, 256))
    return reg


@pytest.fixture(scope="session")
def registry():
    return small_registry()


def sim_seed() -> int:
    """The seed of the session's simulated night."""
    return 7


@pytest.fixture(scope="session")
def sim_config():
    # Bad files are made on purpose by the tests; the simulator's own truncated
    # uploads are tested separately.
    return SimulationConfig(
        seed=sim_seed(),
        nights=(NIGHT,),
        science_per_night=3,
        stars_per_field=3000,
        truncated_uploads=0.0,
    )


@pytest.fixture(scope="session")
def simulated(tmp_path_factory, registry, sim_config):
    """One simulated night of every site (incoming folder + truth), made once per session."""
    root = tmp_path_factory.mktemp("sim")
    frames = simulate_network(registry, root / "incoming", root / "truth", sim_config)
    return {"root": root, "incoming": root / "incoming", "truth": root / "truth", "frames": frames}


@pytest.fixture
def incoming(tmp_path, simulated):
    """A fresh copy of the simulated drop folder."""
    dest = tmp_path / "incoming"
    shutil.copytree(simulated["incoming"], dest)
    return Store(str(dest))


@pytest.fixture
def lake(tmp_path):
    return Lake(str(tmp_path / "lake"))


@pytest.fixture(scope="session")
def truth_frames(simulated) -> pd.DataFrame:
    return simulated["frames"]


@pytest.fixture(scope="session")
def mlflow_champions(tmp_path_factory):
    """An MLflow store whose three champions are tiny trained models (see champions.py)."""
    from telescope_assets.resources import MlflowResource
    from telescope_assets_tests import champions

    root = tmp_path_factory.mktemp("mlflow_champions")
    store = MlflowResource(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts")
    )
    champions.register(store, champions.train())
    return store


@pytest.fixture
def registry_file(tmp_path, registry):
    path = tmp_path / "sites.yaml"
    path.write_text(registry.to_yaml())
    return path


@pytest.fixture
def resources(tmp_path, incoming, registry_file, simulated, mlflow_champions):
    """Every resource of the code location, local and small (a thread for dask).

    The simulated reference catalogues are published in the lake, where the registry
    says sites find them.
    """
    lake = LakeResource(root=str(tmp_path / "lake")).get()
    for path in (simulated["truth"] / "refcat").glob("*.parquet"):
        lake.write_bytes(f"refcat/{path.name}", path.read_bytes())
    return {
        "lake_resource": LakeResource(root=str(tmp_path / "lake")),
        "incoming": IncomingResource(url=incoming.url, settle_seconds=0, max_files_per_tick=500),
        "registry_resource": RegistryResource(path=str(registry_file)),
        # One worker thread: Python's warning filters are process-wide, and parallel
        # threads entering catch_warnings race on them. Several workers are tested in
        # processes (test_results_do_not_depend_on_the_number_of_workers).
        "dask": DaskResource(n_workers=1, processes=False),
        "mlflow": mlflow_champions,
    }


#: The machine's PostgreSQL (CI starts it); each test gets a database of its own.
PG = os.environ.get("TELESCOPE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


@pytest.fixture
def postgres_url():
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"telescope_assets_test_{uuid.uuid4().hex[:8]}"
    dsn = PG.replace("postgresql+psycopg2://", "postgresql://")
    admin = psycopg2.connect(f"{dsn}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG}/{name}"
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        cur.execute(f'DROP DATABASE "{name}"')
    admin.close()


TWO_NIGHTS = ("2026-03-18", "2026-03-19")


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, registry):
    """Two simulated nights of tololo, made once per module (references, then alerts).

    A transient is put into every night-2 frame of a field and filter that night 1 also
    observed (so a reference exists), at one place of the sky: the night has alerts for
    certain, whatever the sky's own transients and the subtraction's residuals do.
    """
    import pandas as pd

    from telescope_assets_tests.injection import inject

    root = tmp_path_factory.mktemp("two_nights")
    cfg = SimulationConfig(
        seed=1,
        nights=TWO_NIGHTS,
        sites=("tololo",),
        science_per_night=4,
        stars_per_field=3000,
        truncated_uploads=0.0,
    )
    frames = simulate_network(registry, root / "incoming", root / "truth", cfg)
    science = frames[frames.kind == "science"]
    seen = set(
        zip(*science[science.night == TWO_NIGHTS[0]][["field", "filter"]].T.values, strict=True)
    )
    tonight = science[science.night == TWO_NIGHTS[1]]
    targets = tonight[
        [(f, b) in seen for f, b in zip(tonight.field, tonight["filter"], strict=True)]
    ]
    field = targets.field.iloc[0]
    refcat = pd.read_parquet(root / "truth" / "refcat" / f"{field}.parquet")
    at = None
    for frame in targets[targets.field == field].itertuples():
        placed = inject(root / "incoming" / frame.filename, registry["tololo"], refcat, frame, at)
        at = at or (placed["ra"], placed["dec"])
    return root
