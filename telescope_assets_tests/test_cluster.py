"""The standing dask cluster (``telescope-ui``'s): it outlives runs, and its workers keep
the models they loaded."""

import os

import pandas as pd
import psutil

from telescope_assets.cluster import standing_cluster
from telescope_assets.lake import Lake
from telescope_assets.ml import registry
from telescope_assets.resources import DaskResource
from telescope_assets.tasks import quality


def _load_stats(uri: str) -> tuple[int, int]:
    """(misses, hits) of this worker process's model cache, after loading the champion."""
    info = registry.champion_info(uri, "real_bogus")
    registry.load_version(uri, "real_bogus", info["version"])
    stats = registry.load_version.cache_info()
    return stats.misses, stats.hits


def test_runs_share_warm_workers_that_load_each_model_once(tmp_path, mlflow_champions):
    uri = mlflow_champions.tracking_uri
    with standing_cluster(tmp_path / "dask", n_workers=1) as address:
        assert address.startswith("tcp://127.0.0.1:")
        seen = []
        for _run in range(2):  # two runs, each with its own resource and client
            dask = DaskResource(scheduler_address=address)
            try:
                seen.append((dask.run(os.getpid), dask.run(_load_stats, uri)))
            finally:
                dask.close()
        (pid1, (miss1, hit1)), (pid2, (miss2, hit2)) = seen
        assert pid1 == pid2 != os.getpid()  # the same worker process served both runs
        assert (miss1, hit1) == (1, 0)  # loaded by the first run
        assert (miss2, hit2) == (1, 1)  # kept for the second
        # Frame quality without frames still names the champions it would have used.
        dask = DaskResource(scheduler_address=address)
        try:
            scored = dask.run(quality.score_frames, pd.DataFrame(), Lake(str(tmp_path)), uri)
        finally:
            dask.close()
        assert scored["cnn_version"] == str(mlflow_champions.champion("frame_quality").version)
        workers = [p for p in psutil.Process(pid1).parents() if "dask" in " ".join(p.cmdline())]
    # Stopped with the context: no worker process is left.
    assert not psutil.pid_exists(pid1) or psutil.Process(pid1).status() == psutil.STATUS_ZOMBIE
    assert workers  # the worker ran under the cluster's own `dask worker` process


def test_without_a_champion_frame_quality_scores_nothing_and_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path}/empty.db"
    scored = quality.score_frames(pd.DataFrame({"frame_id": ["f1"]}), Lake(str(tmp_path)), uri)
    assert scored["cnn_version"] is None
    assert list(scored["table"].columns) == ["frame_id"]
