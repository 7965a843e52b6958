"""The preloaded run launcher: runs forked from a warm server, fresh code, termination."""

import os
import textwrap
import time

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import instance_for_test

from telescope_assets.ops.launcher import PID_TAG, PreloadedRunLauncher

JOB = """
import os, time
import dagster as dg

VERSION = {version!r}

@dg.asset
def hello() -> dg.MaterializeResult:
    '''A trivial asset that says which code version and process ran it.'''
    time.sleep({sleep})
    return dg.MaterializeResult(metadata={{"version": VERSION, "pid": os.getpid()}})

hello_job = dg.define_asset_job("hello_job", selection=[hello], executor_def=dg.in_process_executor)
defs = dg.Definitions(assets=[hello], jobs=[hello_job])
job = defs.resolve_job_def("hello_job")
"""


@pytest.fixture
def instance(tmp_path):
    overrides = {
        "run_launcher": {"module": "telescope_assets.ops.launcher", "class": "PreloadedRunLauncher"}
    }
    (tmp_path / "home").mkdir()
    with instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "home")) as inst:
        yield inst


def _launch(instance, path, version, sleep=0.0):
    path.write_text(textwrap.dedent(JOB.format(version=version, sleep=sleep)))
    recon = ReconstructableJob.for_file(str(path), "job")
    run = instance.create_run_for_job(
        recon.get_definition(), job_code_origin=recon.get_python_origin()
    )
    instance.launch_run(run.run_id, workspace=None)
    return run.run_id


def _wait_finished(instance, run_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            return run
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish in {timeout} s")


def _materialized(instance, run_id):
    events = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    (event,) = events
    return event.event_log_entry.asset_materialization.metadata


def test_runs_are_forked_from_one_server_and_see_edited_code(instance, tmp_path):
    launcher = instance.run_launcher
    assert isinstance(launcher, PreloadedRunLauncher)
    path = tmp_path / "jobs.py"
    first = _launch(instance, path, "one")
    server = launcher._server.pid
    run = _wait_finished(instance, first)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    worker = int(run.tags[PID_TAG])
    assert worker not in (os.getpid(), server)
    meta = _materialized(instance, first)
    assert meta["version"].value == "one"
    assert meta["pid"].value == worker  # the step ran in the forked worker (in-process)

    second = _launch(instance, path, "two")  # the code changed between the runs
    run = _wait_finished(instance, second)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert launcher._server.pid == server  # the same warm server forked it
    assert _materialized(instance, second)["version"].value == "two"
    engine = instance.all_logs(second, of_type=dg.DagsterEventType.ENGINE_EVENT)
    assert any("forked from the preloaded server" in e.dagster_event.message for e in engine)


def test_a_run_is_terminated_and_monitoring_sees_its_worker(instance, tmp_path):
    launcher = instance.run_launcher
    run_id = _launch(instance, tmp_path / "jobs.py", "slow", sleep=60)
    deadline = time.monotonic() + 60
    while instance.get_run_by_id(run_id).status != dg.DagsterRunStatus.STARTED:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)
    run = instance.get_run_by_id(run_id)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert launcher.terminate(run_id)
    run = _wait_finished(instance, run_id, timeout=30)
    assert run.status == dg.DagsterRunStatus.CANCELED
    # The worker reports the run canceled, then tears down and exits: allow it that time.
    deadline = time.monotonic() + 30
    while launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING:
        assert time.monotonic() < deadline, "the canceled run's worker did not exit"
        time.sleep(0.1)
    assert launcher.check_run_worker_health(run).status == WorkerStatus.NOT_FOUND
    assert not launcher.terminate(run_id)  # already over


def test_the_server_is_replaced_when_it_dies(instance, tmp_path):
    launcher = instance.run_launcher
    path = tmp_path / "jobs.py"
    _wait_finished(instance, _launch(instance, path, "one"))
    launcher._server.kill()
    launcher._server.wait()
    run = _wait_finished(instance, _launch(instance, path, "two"))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert launcher._server.poll() is None
