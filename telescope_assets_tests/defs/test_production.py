"""The production instance configuration (deploy/production/dagster.yaml) on PostgreSQL."""

from pathlib import Path

import dagster as dg
import pytest

from telescope_assets.definitions import defs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "production"


@pytest.mark.postgres
def test_production_instance_runs_on_postgres_with_monitoring_and_retries(
    postgres_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("TELESCOPE_DAGSTER_PG_URL", postgres_url)
    monkeypatch.setenv("TELESCOPE_DAGSTER_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("DAGSTER_HOME", str(DEPLOY))
    with dg.DagsterInstance.from_config(str(DEPLOY)) as instance:
        from dagster_postgres import (
            PostgresEventLogStorage,
            PostgresRunStorage,
            PostgresScheduleStorage,
        )

        from telescope_assets.ops.pg_storage import (
            RestartTolerantPostgresEventLogStorage,
            RestartTolerantPostgresRunStorage,
        )

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.event_log_storage, RestartTolerantPostgresEventLogStorage)
        assert isinstance(instance.run_storage, RestartTolerantPostgresRunStorage)
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        limits = {x["key"]: x["limit"] for x in queue.tag_concurrency_limits}
        assert limits == {"dagster/partition": 1, "telescope/site": 2}
        assert queue.max_concurrent_runs == 8
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        # Crashed runs are retried; runs that failed on their input (a bad frame) are not.
        assert not instance.run_retries_retry_on_asset_or_op_failure
        # A run lands in PostgreSQL and reads back.
        run = instance.create_run_for_job(
            defs.resolve_job_def("nightly_job"), tags={"telescope/site": "tololo"}
        )
        assert instance.get_run_by_id(run.run_id).tags["telescope/site"] == "tololo"


def test_every_job_has_a_max_runtime():
    for name in ("frames_job", "followup_job", "nightly_job", "models_job"):
        tags = defs.resolve_job_def(name).tags
        assert int(tags["dagster/max_runtime"]) > 0
