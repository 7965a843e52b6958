"""Resources pointed at tmp_path, and helpers to run the frames assets."""

import os
import uuid

import pytest

from telescope_assets.resources import (
    DaskResource,
    IncomingResource,
    LakeResource,
    RegistryResource,
)


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
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "incoming": IncomingResource(url=incoming.url, settle_seconds=0, max_files_per_tick=500),
        "registry": RegistryResource(path=str(registry_file)),
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
