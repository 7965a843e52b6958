"""Two runs of one partition never run at once, however they were launched, on both
instances: the real run queue decides, with the repository's own dagster.yaml files."""

import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from telescope_assets.definitions import defs

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def _queued(instance, site: str, night: str, source: str) -> dg.DagsterRun:
    """A queued run of frames_job for one partition, tagged as Dagster tags it."""
    job = defs.resolve_job_def("frames_job")
    key = dg.MultiPartitionKey({"site": site, "night": night})
    tags = job.partitions_def.get_tags_for_partition_key(key) | {"source": source}
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="telescope_assets.definitions")
    )
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job.name)
    return instance.create_run_for_job(
        job, tags=tags, status=dg.DagsterRunStatus.QUEUED, remote_job_origin=origin
    )


def _launchable(instance) -> list[dg.DagsterRun]:
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    daemon._logger = logging.getLogger("test")
    return daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)


def _check(instance):
    # The sensor's run and a run launched by hand from the UI (no sensor tags): same partition.
    a = _queued(instance, "tololo", "2026-03-18", "sensor")
    b = _queued(instance, "tololo", "2026-03-18", "ui")
    other = _queued(instance, "lapalma", "2026-03-18", "sensor")
    first = {r.run_id for r in _launchable(instance)}
    assert other.run_id in first
    assert len(first & {a.run_id, b.run_id}) == 1  # serialised, never interleaved
    started = a if a.run_id in first else b
    instance.handle_run_event(
        started.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=started.job_name
        ),
    )
    waiting = b if started is a else a
    assert waiting.run_id not in {r.run_id for r in _launchable(instance)}


def _instance_config(path: Path, tmp_path: Path, url: str | None = None) -> Path:
    """The instance ``path`` configures, with its storage in tmp_path or at ``url``."""
    config = yaml.safe_load(path.read_text())
    if url is None:
        config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "s")}}
    else:
        for part in ("run_storage", "event_log_storage", "schedule_storage"):
            config[part]["config"]["postgres_url"] = url
    config.pop("compute_logs", None)
    config.pop("local_artifact_storage", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def test_one_partition_runs_once_at_a_time_on_the_embedded_instance(tmp_path):
    home = _instance_config(ROOT / "dagster.yaml", tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        _check(instance)


@pytest.mark.postgres
def test_one_partition_runs_once_at_a_time_on_the_production_instance(tmp_path, postgres_url):
    home = _instance_config(
        ROOT / "deploy" / "production" / "dagster.yaml",
        tmp_path,
        postgres_url,
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        _check(instance)
