"""The standing dask cluster (``telescope-ui``'s): it outlives runs, and its workers keep
the models they loaded."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import psutil

from telescope_assets.lake import Lake
from telescope_assets.ml import model_registry
from telescope_assets.ops import warmup
from telescope_assets.ops.cluster import WORKER_MALLOC, standing_cluster
from telescope_assets.resources import DaskResource
from telescope_assets.tasks import quality


def _load_stats(uri: str) -> tuple[int, int]:
    """(misses, hits) of this worker process's model cache, after loading the champion."""
    info = model_registry.champion_info(uri, "real_bogus")
    model_registry.load_version(uri, "real_bogus", info["version"])
    stats = model_registry.load_version.cache_info()
    return stats.misses, stats.hits


def _malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in WORKER_MALLOC}


def _warm_state() -> tuple[list[str], int]:
    """(science modules not yet imported, models already loaded) in this worker."""
    missing = [name for name in warmup.MODULES if name not in sys.modules]
    return missing, model_registry.load_version.cache_info().currsize


def test_workers_have_the_projects_malloc_thresholds_not_dasks(tmp_path):
    """Standing and per-run clusters alike (dask's own default is a 64 KiB trim)."""
    with standing_cluster(tmp_path / "dask", n_workers=1) as address:
        dask = DaskResource(scheduler_address=address)
        try:
            assert dask.run(_malloc_env) == WORKER_MALLOC
            # A standing cluster does cheap work too, even when asked to stay here without one.
            assert dask.run(os.getpid, in_process_without_cluster=True) != os.getpid()
        finally:
            dask.close()
    dask = DaskResource(n_workers=1)
    try:
        # No cluster standing and none started yet: a cheap call does not start one.
        assert dask.run(os.getpid, in_process_without_cluster=True) == os.getpid()
        assert dask._client is None
        assert dask.run(_malloc_env) == WORKER_MALLOC
        # Once the run's cluster is up, cheap work goes to its (warm) workers as well.
        assert dask.run(os.getpid, in_process_without_cluster=True) != os.getpid()
    finally:
        dask.close()


def test_runs_share_warm_workers_that_load_each_model_once(tmp_path, mlflow_champions, monkeypatch):
    uri = mlflow_champions.tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what the workers warm up with
    with standing_cluster(tmp_path / "dask", n_workers=1) as address:
        assert address.startswith("tcp://127.0.0.1:")
        # Warmed up as it started: the science stack imported, the three champions loaded.
        dask = DaskResource(scheduler_address=address)
        try:
            assert dask.run(_warm_state) == ([], 3)
        finally:
            dask.close()
        seen = []
        for _run in range(2):  # two runs, each with its own resource and client
            dask = DaskResource(scheduler_address=address)
            try:
                seen.append((dask.run(os.getpid), dask.run(_load_stats, uri)))
            finally:
                dask.close()
        (pid1, (miss1, hit1)), (pid2, (miss2, hit2)) = seen
        assert pid1 == pid2 != os.getpid()  # the same worker process served both runs
        # Loaded by the warm-up (with the two other champions), kept for both runs.
        assert (miss1, hit1) == (3, 1)
        assert (miss2, hit2) == (3, 2)
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


def test_telescope_ui_points_dagster_at_its_cluster_and_stops_all_it_started(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    with (tmp_path / "ui.log").open("wb") as log:
        ui = subprocess.Popen(
            [sys.executable, "-m", "telescope_assets.ops.cluster", "--port", str(port),
             "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the webserver did not come up"
                time.sleep(1)
        started = psutil.Process(ui.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        dev = [p for p, c in zip(started, commands, strict=True) if "dagster dev" in c]
        assert dev, commands
        assert any("dask scheduler" in c for c in commands)
        assert any("dask worker" in c for c in commands)
        address = dev[0].environ()["TELESCOPE_DASK_SCHEDULER"]
        assert address.startswith("tcp://127.0.0.1:")
        dask = DaskResource(scheduler_address=address)
        try:
            assert dask.run(os.getpid) != os.getpid()  # runs compute on its workers
        finally:
            dask.close()
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=90)
    _gone, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
