"""A run worker killed with SIGKILL never blocks the queue or a pool (embedded default)."""

import logging
import os
import signal
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from telescope_assets.ops.launcher import PID_TAG

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]

JOB = """
import time
import dagster as dg

@dg.asset(pool="alert_objects")
def slow_alerts() -> None:
    '''Holds the pool slot that the real `alerts` step takes, for a minute.'''
    time.sleep(60)

job = dg.Definitions(
    assets=[slow_alerts],
    jobs=[dg.define_asset_job("slow", [slow_alerts], executor_def=dg.in_process_executor)],
).resolve_job_def("slow")
"""


@pytest.fixture
def embedded_instance(tmp_path):
    """The repository's own dagster.yaml, with its storage moved into tmp_path."""
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    config["local_artifact_storage"]["config"]["base_dir"] = str(tmp_path / "storage")
    config["compute_logs"]["config"]["base_dir"] = str(tmp_path / "logs")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _started(instance, path: Path) -> dg.DagsterRun:
    path.write_text(textwrap.dedent(JOB))
    recon = ReconstructableJob.for_file(str(path), "job")
    run = instance.create_run_for_job(
        recon.get_definition(), job_code_origin=recon.get_python_origin()
    )
    instance.launch_run(run.run_id, workspace=None)
    deadline = time.monotonic() + 90
    while True:
        run = instance.get_run_by_id(run.run_id)
        slots = instance.event_log_storage.get_pool_limits()
        held = instance.event_log_storage.get_concurrency_info("alert_objects").claimed_slots
        if run.status == dg.DagsterRunStatus.STARTED and held:
            return run
        assert time.monotonic() < deadline, f"run not started with its slot: {run.status}"
        assert slots is not None
        time.sleep(0.2)


def test_a_killed_run_is_failed_and_frees_its_pool_slot(embedded_instance, tmp_path):
    instance = embedded_instance
    assert instance.run_monitoring_enabled, "dagster.yaml has no run monitoring"
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    run = _started(instance, tmp_path / "jobs.py")
    os.kill(int(run.tags[PID_TAG]), signal.SIGKILL)
    time.sleep(0.5)

    # One pass of the daemon's run monitor, as `dagster dev` runs it every poll interval.
    record = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))[0]
    monitor_started_run(instance, None, record, logging.getLogger("test"))
    run = instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "is gone" in failure[-1].dagster_event.message

    # The slot is freed once the run has been over for the configured seconds.
    wait = instance.run_monitoring_settings["free_slots_after_run_end_seconds"]
    time.sleep(wait + 1)
    list(
        execute_concurrency_slots_iteration(
            SimpleNamespace(instance=instance), logging.getLogger("t")
        )
    )
    info = instance.event_log_storage.get_concurrency_info("alert_objects")
    assert info.claimed_slots == []
