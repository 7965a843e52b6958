"""The new_alerts sensor: storage-id cursor, nothing dropped between ticks, restart-safe."""

import dagster as dg

from telescope_assets.defs.followup.sensors import new_alerts


def _report(instance, site, night, n_alerts):
    key = dg.MultiPartitionKey({"site": site, "night": night})
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="alerts", partition=str(key), metadata={"n_alerts": n_alerts}
        )
    )


def _tick(instance, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor) as ctx:
        return new_alerts(ctx)


def test_every_alerts_materialization_gets_one_followup_run_across_restarts():
    with dg.instance_for_test() as instance:
        assert _tick(instance, None).skip_reason
        _report(instance, "tololo", "2026-03-19", 2)
        _report(instance, "sutherland", "2026-03-19", 0)  # nothing to follow up
        first = _tick(instance, None)
        assert [r.partition_key for r in first.run_requests] == ["2026-03-19|tololo"]
        # Tagged as the frames runs are, so the UI filters a partition's runs together.
        assert first.run_requests[0].tags["telescope/partition"] == "tololo|2026-03-19"
        assert first.run_requests[0].tags["telescope/site"] == "tololo"
        # Several materializations land between two ticks (an @asset_sensor would see only
        # the latest): every one is requested.
        for site in ("lapalma", "sidingspring", "tololo"):
            _report(instance, site, "2026-03-20", 1)
        # The daemon restarts and evaluates twice from the stored cursor: same run keys.
        second = _tick(instance, first.cursor)
        replay = _tick(instance, first.cursor)
        assert [r.run_key for r in second.run_requests] == [r.run_key for r in replay.run_requests]
        assert [r.partition_key for r in second.run_requests] == [
            "2026-03-20|lapalma",
            "2026-03-20|sidingspring",
            "2026-03-20|tololo",
        ]
        keys = [r.run_key for r in [*first.run_requests, *second.run_requests]]
        assert len(set(keys)) == 4
        assert int(second.cursor) > int(first.cursor)
        assert _tick(instance, second.cursor).skip_reason
