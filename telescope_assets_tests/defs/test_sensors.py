"""Layer 4: the new_frames sensor evaluated with a cursor, as the daemon does."""

import dagster as dg

from telescope_assets.defs.ingest.sensors import new_frames
from telescope_assets.ingest import read_batch
from telescope_assets_tests.conftest import NIGHT


def _tick(resources, cursor):
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx,
    ):
        return new_frames(ctx)


def test_first_tick_requests_one_run_per_site_night(resources, registry):
    result = _tick(resources, None)
    keys = {r.partition_key.keys_by_dimension["site"] for r in result.run_requests}
    assert keys == set(registry.names)
    assert {r.partition_key.keys_by_dimension["night"] for r in result.run_requests} == {NIGHT}
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)
    assert result.cursor is not None
    again = _tick(resources, result.cursor)
    assert again.run_requests == []
    assert again.skip_reason
    assert again.cursor == result.cursor


def test_restart_from_cursor_neither_loses_nor_repeats(resources, simulated):
    """Ticks of at most 7 files, each followed by a daemon crash and a replay."""
    resources = {
        **resources,
        "incoming": resources["incoming"].model_copy(update={"max_files_per_tick": 7}),
    }
    cursor, submitted = None, {}
    for _ in range(100):
        # The daemon submits these runs, then dies before it stores the cursor...
        first = _tick(resources, cursor)
        # ...and, restarted, evaluates again from the cursor it had stored.
        replay = _tick(resources, cursor)
        first_keys = {r.run_key for r in first.run_requests}
        assert first_keys <= {r.run_key for r in replay.run_requests}
        for r in [*first.run_requests, *replay.run_requests]:
            submitted[r.run_key] = r  # Dagster launches one run per run key
        if first.skip_reason and replay.skip_reason:
            break
        cursor = replay.cursor
    lake = resources["lake_resource"].get()
    batches = {r.tags["telescope/batch"] for r in submitted.values()}
    accepted = [a["frame_id"] for b in batches for a in read_batch(lake, b)["accepted"]]
    assert sorted(accepted) == sorted(simulated["frames"].frame_id)  # each exactly once
    per_partition = {}
    for r in submitted.values():
        per_partition.setdefault(r.tags["telescope/batch"], set()).add(
            r.tags["telescope/partition"]
        )
    for batch in batches:
        expected = {f"{s}|{n}" for s, n in read_batch(lake, batch)["partitions"]}
        assert per_partition[batch] == expected


def test_sensor_without_cursor_starts_after_offline_ingestion(resources):
    first = _tick(resources, None)
    lake = resources["lake_resource"].get()
    lake.write_json(lake.offline_cursor(), {"batch_id": first.cursor})
    assert _tick(resources, None).run_requests == []
