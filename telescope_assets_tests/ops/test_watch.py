"""Sensors that watch (long polling): they answer when something arrives, not at the end."""

import shutil
import threading
import time

import dagster as dg
import pytest

from telescope_assets.defs.followup.sensors import new_alerts
from telescope_assets.defs.ingest.sensors import new_frames
from telescope_assets.lake import Store
from telescope_assets.ops.watch import WATCH_ENV, watch, watch_seconds
from telescope_assets.resources import IncomingResource


def test_watch_returns_the_first_true_value_and_glances_once_with_zero():
    values = iter([[], [], ["frame.fits"], ["never reached"]])
    assert watch(lambda: next(values), 5.0, poll=0.01) == ["frame.fits"]
    calls = []
    assert watch(lambda: calls.append(1) or [], 0.0) == []
    assert calls == [1]


def test_watch_seconds_must_stay_below_the_daemon_loop(monkeypatch):
    monkeypatch.setenv(WATCH_ENV, "5")
    with pytest.raises(ValueError, match="below the sensor daemon's 5 s loop"):
        watch_seconds()
    monkeypatch.setenv(WATCH_ENV, "soon")
    with pytest.raises(ValueError, match="number of seconds"):
        watch_seconds()
    monkeypatch.delenv(WATCH_ENV)
    assert watch_seconds() == 4.0


def _later(seconds, fn):
    thread = threading.Timer(seconds, fn)
    thread.start()
    return thread


def test_new_frames_ingests_a_frame_that_lands_while_it_watches(
    monkeypatch, tmp_path, resources, simulated
):
    monkeypatch.setenv(WATCH_ENV, "4")
    drop = tmp_path / "drop"
    drop.mkdir()
    resources = {**resources, "incoming": IncomingResource(url=str(drop), settle_seconds=0)}
    source = next(p for p in sorted(simulated["incoming"].rglob("*.fits")))
    target = drop / source.relative_to(simulated["incoming"])

    def upload():  # as an uploader does: a temporary name, then a rename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").rename(target)

    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=None, resources=resources) as ctx,
    ):
        timer = _later(0.5, upload)
        start = time.monotonic()
        result = new_frames(ctx)
        elapsed = time.monotonic() - start
        timer.join()
    assert len(result.run_requests) == 1
    assert 0.5 <= elapsed < 3.5  # it answered on arrival, not at the end of its watch
    assert Store(str(drop)).list("", recursive=True) == []  # ingested, nothing left


def test_new_frames_with_nothing_to_do_watches_then_skips(monkeypatch, tmp_path, resources):
    monkeypatch.setenv(WATCH_ENV, "1")
    resources = {**resources, "incoming": IncomingResource(url=str(tmp_path / "empty"))}
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=None, resources=resources) as ctx,
    ):
        start = time.monotonic()
        result = new_frames(ctx)
        elapsed = time.monotonic() - start
    assert result.skip_reason
    assert not result.run_requests
    assert elapsed >= 1.0


def test_new_alerts_requests_a_followup_for_an_alert_made_while_it_watches(monkeypatch):
    monkeypatch.setenv(WATCH_ENV, "4")
    with dg.instance_for_test() as instance:

        def materialize():
            key = dg.MultiPartitionKey({"site": "tololo", "night": "2026-03-19"})
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key="alerts", partition=str(key), metadata={"n_alerts": 1}
                )
            )

        with dg.build_sensor_context(instance=instance, cursor=None) as ctx:
            timer = _later(0.5, materialize)
            start = time.monotonic()
            result = new_alerts(ctx)
            elapsed = time.monotonic() - start
            timer.join()
    assert [r.partition_key for r in result.run_requests] == ["2026-03-19|tololo"]
    assert 0.5 <= elapsed < 3.5
