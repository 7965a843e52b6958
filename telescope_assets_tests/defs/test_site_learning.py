"""The site_learning sensor: a provisional site with enough frames asks to learn, once."""

import dagster as dg
import pandas as pd

from telescope_assets.defs.models.sites import site_learning
from telescope_assets.lake import Lake
from telescope_assets.resources import LakeResource, RegistryResource
from telescope_assets.tasks.site_learning import MIN_LEARN_FRAMES, learning_nights


def _frames(lake: Lake, site: str, night: str, n_subtracted: int, n_other: int = 2) -> None:
    statuses = ["subtracted"] * n_subtracted + ["bad_quality"] * n_other
    table = pd.DataFrame(
        {"frame_id": [f"{night}-{i}" for i in range(len(statuses))], "status": statuses}
    )
    lake.write_parquet(lake.manifest("transient_frames", site, night), table)


def test_a_provisional_site_with_enough_frames_asks_to_learn_once_per_set_of_nights(
    tmp_path, registry_file, mlflow_champions
):
    lake = Lake(str(tmp_path / "lake"))
    resources = {
        "lake_resource": LakeResource(root=str(tmp_path / "lake")),
        "registry_resource": RegistryResource(path=str(registry_file)),
        "mlflow": mlflow_champions,
    }

    def tick():
        with dg.build_sensor_context(resources=resources) as context:
            return site_learning(context)

    assert learning_nights(lake, "tololo") == []
    result = tick()
    assert not result.run_requests
    assert "no provisional site" in result.skip_reason.skip_message

    _frames(lake, "tololo", "2026-03-18", 0)  # references only: nothing to learn from
    _frames(lake, "tololo", "2026-03-19", MIN_LEARN_FRAMES - 1)
    assert learning_nights(lake, "tololo") == []  # one frame short
    _frames(lake, "tololo", "2026-03-20", 1)
    assert learning_nights(lake, "tololo") == ["2026-03-19", "2026-03-20"]
    (request,) = tick().run_requests
    assert request.partition_key == "tololo"
    assert request.run_key == "site_learning:tololo:2026-03-19,2026-03-20"
    config = request.run_config["ops"]["site_real_bogus_model"]["config"]
    assert config["nights"] == ["2026-03-19", "2026-03-20"]
    # The same nights give the same run key (Dagster launches it once); a new night, a new one.
    assert tick().run_requests[0].run_key == request.run_key
    _frames(lake, "tololo", "2026-03-21", 3)
    assert tick().run_requests[0].run_key.endswith("2026-03-19,2026-03-20,2026-03-21")
