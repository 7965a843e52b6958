"""Arrival: the sensor never stops on a bad file, loses nothing to a killed daemon, and
keeps up with a burst; late frames re-open their night."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from telescope_assets.defs.ingest.sensors import new_frames, reconciler
from telescope_assets.ingest import batches_after, read_batch
from telescope_assets.science.frames import frame_id
from telescope_assets_tests.reliability.conftest import frame_variants


def _tick(resources, cursor):
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx,
    ):
        return new_frames(ctx)


def _drop(resources):
    return resources["incoming"].get()


@pytest.mark.fast
def test_a_malformed_card_and_a_linked_folder_do_not_stop_the_sensor(
    sensor_resources, good_frame, tmp_path
):
    site, good = good_frame
    drop = _drop(sensor_resources)
    bad = bytearray(good)
    start = good.index(b"EXPTIME =")
    bad[start : start + 80] = b"EXPTIME =               60.0.0".ljust(80)
    drop.write_bytes(f"{site}/a_bad_card.fits", bytes(bad))
    drop.write_bytes(f"{site}/b_good.fits", good)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", drop.full(f"{site}/c_linked_folder"))
    first = _tick(sensor_resources, None)  # raised before the fix, on every later tick too
    lake = sensor_resources["lake_resource"].get()
    batch = read_batch(lake, first.run_requests[0].tags["telescope/batch"])
    assert [a["incoming_path"] for a in batch["accepted"]] == [f"{site}/b_good.fits"]
    assert sorted(q["reason"] for q in batch["quarantined"]) == ["bad_header", "not_regular_file"]
    # One run for the good frame's night, one for the night the bad files arrived in
    # (their headers gave none), whose raw_frames check reports them.
    (arrived,) = {q["night"] for q in batch["quarantined"]}
    partitions = {r.tags["telescope/partition"] for r in first.run_requests}
    assert partitions == {f"{site}|{batch['accepted'][0]['night']}", f"{site}|{arrived}"}
    assert drop.entries("") == []
    second = _tick(sensor_resources, first.cursor)
    assert second.run_requests == []
    assert second.skip_reason


@pytest.mark.fast
def test_a_late_frame_reopens_its_old_night(sensor_resources, good_frame):
    from telescope_assets_tests.badframes import rewrite

    site, good = good_frame
    drop = _drop(sensor_resources)
    drop.write_bytes(f"{site}/tonight.fits", good)
    first = _tick(sensor_resources, None)
    (tonight,) = first.run_requests
    other = frame_variants(good, 2)[1]  # another exposure, a week old, sent only now
    late = rewrite(other, DATE_OBS="2026-03-10T03:00:00")
    drop.write_bytes(f"{site}/late.fits", late)
    (again,) = _tick(sensor_resources, first.cursor).run_requests
    assert again.partition_key.keys_by_dimension["night"] == "2026-03-10"  # local afternoon
    assert again.partition_key != tonight.partition_key
    assert again.run_key != tonight.run_key


@pytest.mark.slow
def test_a_burst_of_2000_files_gets_each_exactly_one_run_request(sensor_resources, good_frame):
    site, good = good_frame
    drop = _drop(sensor_resources)
    names = {}
    for i, data in enumerate(frame_variants(good, 2000)):
        drop.write_bytes(f"{site}/burst_{i:04d}.fits", data)
        names[f"{site}/burst_{i:04d}.fits"] = frame_id(data)
    lake = sensor_resources["lake_resource"].get()
    cursor, requested, longest = None, {}, 0.0
    for _ in range(50):
        start = time.perf_counter()
        result = _tick(sensor_resources, cursor)
        longest = max(longest, time.perf_counter() - start)
        for request in result.run_requests:
            assert request.run_key not in requested
            requested[request.run_key] = request
        cursor = result.cursor
        if result.skip_reason and not drop.entries(""):
            break
    assert longest < 60, f"a tick took {longest:.1f} s"
    seen = {}
    for request in requested.values():
        for entry in read_batch(lake, request.tags["telescope/batch"])["accepted"]:
            assert entry["incoming_path"] not in seen  # exactly once
            seen[entry["incoming_path"]] = entry["frame_id"]
    assert seen == names  # set equality, with the right content hash for each


INGEST_FOREVER = """
import sys
from telescope_assets.ingest import ingest
from telescope_assets.lake import Lake, Store
from telescope_assets.registry import load_registry
registry = load_registry(sys.argv[3])
while True:
    result = ingest(Store(sys.argv[1]), Lake(sys.argv[2]), registry, max_files=10)
    print("tick", result.batch_id, flush=True)
    if result.batch_id is None:
        break
"""


@pytest.mark.slow
def test_a_daemon_killed_mid_tick_loses_and_doubles_nothing(sensor_resources, good_frame, tmp_path):
    site, good = good_frame
    drop = _drop(sensor_resources)
    lake = sensor_resources["lake_resource"].get()
    expected = {}
    for i, data in enumerate(frame_variants(good, 400)):
        drop.write_bytes(f"{site}/f{i:03d}.fits", data)
        expected[frame_id(data)] = f"{site}/f{i:03d}.fits"
    args = [sys.executable, "-c", INGEST_FOREVER, drop.url, lake.url]
    args.append(sensor_resources["registry_resource"].path)
    kills = 0
    for pause in (0.05, 0.2, 0.1, 0.3, 0.15):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()  # the first tick is done: kill it inside a later one
        if line.startswith("tick ") and "None" not in line:
            time.sleep(pause)
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.stdout.close()
        proc.wait()
    assert kills == 5
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300)
    assert "tick None" in done.stdout
    assert drop.entries("") == []
    night = read_batch(lake, batches_after(lake, None)[0])["accepted"][0]["night"]
    raw = [p for p in lake.list(f"raw/{site}/{night}", ".fits")]
    assert sorted(os.path.basename(p)[:-5] for p in raw) == sorted(expected)  # nothing lost
    ledgered = set()
    for batch in batches_after(lake, None):
        record = read_batch(lake, batch)
        ledgered |= {e["frame_id"] for e in record["accepted"] + record["duplicates"]}
    assert ledgered == set(expected)  # every frame reaches the sensor's ledger
    assert lake.list("quarantine", recursive=True) == []


@pytest.mark.fast
def test_the_reconciler_sweeps_old_temporary_files_and_keeps_young_ones(sensor_resources):
    lake = sensor_resources["lake_resource"].get()
    lake.write_bytes("calibrated/s/n/a.fits", b"whole")
    old = lake.full("calibrated/s/n/.tmp-dead-a.fits")
    young = lake.full("calibrated/s/n/.tmp-live-b.fits")
    for path in (old, young):
        with open(path, "wb") as fh:
            fh.write(b"half")
    stamp = time.time() - 7200
    os.utime(old, (stamp, stamp))
    assert lake.temporaries(older_than=3600) == ["calibrated/s/n/.tmp-dead-a.fits"]
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance, resources={"lake_resource": sensor_resources["lake_resource"]}
        ) as ctx,
    ):
        reconciler(ctx)
    assert not os.path.exists(old)
    assert os.path.exists(young)  # may be a write in progress
    assert lake.read_bytes("calibrated/s/n/a.fits") == b"whole"
