"""Resources pointed at tmp_path, and helpers to run the frames assets."""

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
