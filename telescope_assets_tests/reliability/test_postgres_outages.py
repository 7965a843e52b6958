"""The production instance's PostgreSQL restarted, or down for a minute, during a run.

These restart the machine's real server (CI starts it; trust authentication on
127.0.0.1), so they run last in their module and always start it again.
"""

import hashlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.ingest import ingest
from telescope_assets.lake import Store
from telescope_assets.resources import LakeResource
from telescope_assets_tests.conftest import NIGHT, PG

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FRAMES = [raw_frames, calibration_masters, calibrated_frames]
KEY = dg.MultiPartitionKey({"site": "tololo", "night": NIGHT})
CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect"]


def _version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def _pg(action: str) -> None:
    subprocess.run([*CLUSTER, _version(), "main", action], check=True, capture_output=True)


def _wait_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def _admin(sql: str, *params) -> None:
    import psycopg2

    dsn = PG.replace("postgresql+psycopg2://", "postgresql://")
    conn = psycopg2.connect(f"{dsn}/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture
def own_database():
    """A database of this test's, dropped over a fresh connection after the restarts."""
    name = f"telescope_assets_restart_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
            _pg("start")
        _wait_ready()
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)
        _admin(f'DROP DATABASE "{name}"')


def _digests(lake) -> dict[str, str]:
    return {
        rel: hashlib.sha256(lake.read_bytes(rel)).hexdigest()
        for rel in lake.list("calibrated", recursive=True)
    }


def _production_storage(url: str) -> dict:
    """The production instance's storage (deploy/production/dagster.yaml) on ``url``."""
    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    storage = {k: config[k] for k in ("run_storage", "event_log_storage", "schedule_storage")}
    for part in storage.values():
        part["config"]["postgres_url"] = url
    return storage


def _materialize(resources, instance):
    return dg.materialize(FRAMES, partition_key=KEY, resources=resources, instance=instance)


def test_a_short_restart_is_ridden_out(resources, registry, own_database):
    ingest(
        resources["incoming"].get(), resources["lake_resource"].get(), registry, max_files=10_000
    )
    overrides = _production_storage(own_database)
    restarted = threading.Event()

    def restart():
        time.sleep(1.0)
        _pg("restart")
        restarted.set()

    with dg.instance_for_test(overrides=overrides) as instance:
        thread = threading.Thread(target=restart)
        thread.start()
        result = _materialize(resources, instance)
        thread.join()
        assert restarted.is_set()
        assert result.success
        records = instance.fetch_materializations(dg.AssetKey("calibrated_frames"), limit=5)
        assert [r.partition_key for r in records.records] == [KEY]


def test_a_minute_down_fails_clearly_and_a_retry_gives_identical_outputs(
    resources, registry, own_database, simulated, tmp_path
):
    ingest(
        resources["incoming"].get(), resources["lake_resource"].get(), registry, max_files=10_000
    )
    clean = {**resources, "lake_resource": LakeResource(root=str(tmp_path / "clean"))}
    shutil.copytree(simulated["incoming"], tmp_path / "incoming_clean")
    ingest(
        Store(str(tmp_path / "incoming_clean")),
        clean["lake_resource"].get(),
        registry,
        max_files=10_000,
    )
    assert dg.materialize(FRAMES, partition_key=KEY, resources=clean).success
    overrides = _production_storage(own_database)
    with dg.instance_for_test(overrides=overrides) as instance:
        _pg("stop")
        try:
            start = time.monotonic()
            with pytest.raises(Exception, match="too many retries for DB connection"):
                _materialize(resources, instance)
            assert time.monotonic() - start < 55  # it says so well within the minute
            time.sleep(max(0.0, 60 - (time.monotonic() - start)))
        finally:
            _pg("start")
            _wait_ready()
        retry = _materialize(resources, instance)
        assert retry.success
    assert _digests(resources["lake_resource"].get()) == _digests(clean["lake_resource"].get())
