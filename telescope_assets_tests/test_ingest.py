import datetime as dt
import os
import time

import pytest

from telescope_assets.ingest import batches_after, ingest, read_batch, waiting_files
from telescope_assets.lake import Store
from telescope_assets.science.frames import REASONS
from telescope_assets.science.nights import night_of
from telescope_assets_tests.badframes import CASES, bad_frames
from telescope_assets_tests.conftest import NIGHT


def _count(store: Store) -> int:
    return len(store.list("", recursive=True))


def test_every_file_is_accepted_or_quarantined_and_incoming_empties(
    incoming, lake, registry, simulated
):
    total = _count(incoming)
    good = next(p for p in incoming.list("sidingspring") if p.endswith("_science.fits"))
    for case, data in bad_frames(incoming.read_bytes(good)).items():
        incoming.write_bytes(f"sidingspring/bad_{case.replace(':', '_')}.fits", data)
    result = ingest(incoming, lake, registry, max_files=10_000)
    assert len(result.accepted) == total == len(simulated["frames"])
    assert len(result.quarantined) == len(CASES)
    assert _count(incoming) == 0
    by_name = {q["incoming_path"]: q for q in result.quarantined}
    for case in CASES:
        entry = by_name[f"sidingspring/bad_{case.replace(':', '_')}.fits"]
        reason, _, detail = case.partition(":")
        assert entry["reason"] == reason
        assert detail in entry["detail"]
        # the bytes and the reason are both kept
        site, night = entry["site"], entry["night"]
        assert lake.exists(lake.quarantine(site, night, entry["frame_id"], "fits"))
        assert (
            lake.read_json(lake.quarantine(site, night, entry["frame_id"], "json"))["reason"]
            == reason
        )
    # accepted frames are in the lake under raw/{site}/{night}/ by content hash
    for entry in result.accepted:
        assert lake.exists(lake.raw(entry["site"], entry["night"], entry["frame_id"]))
    # Files whose header gave no night are counted in the night they arrived in, at the
    # site of their folder: that partition's run reports them.
    arrival = {q["night"] for q in result.quarantined if q.get("night_from") == "arrival"}
    received = dt.datetime.fromisoformat(result.quarantined[0]["received_at"])
    assert arrival == {night_of(received, registry["sidingspring"].timezone)}
    assert all(q["site"] == "sidingspring" for q in result.quarantined)
    assert set(result.partitions) == {(s, NIGHT) for s in registry.names} | {
        ("sidingspring", n) for n in arrival
    }
    batch = read_batch(lake, result.batch_id)
    assert len(batch["accepted"]) + len(batch["quarantined"]) == total + len(CASES)


def test_quarantined_files_are_counted_where_they_arrived(incoming, lake, registry):
    garbage = b"not a FITS file at all" * 200
    incoming.write_bytes("tololo/garbage.fits", garbage)
    incoming.write_bytes("stray.fits", garbage + b"!")  # no site folder: unassigned
    incoming.write_bytes("nosuchsite/stray.fits", garbage + b"?")
    result = ingest(incoming, lake, registry, max_files=10_000)
    by_name = {q["incoming_path"]: q for q in result.quarantined}
    tololo = by_name["tololo/garbage.fits"]
    assert (tololo["site_from"], tololo["night_from"]) == ("folder", "arrival")
    assert tololo["in_partitions"]
    assert ("tololo", tololo["night"]) in result.partitions
    assert [q["frame_id"] for q in lake.quarantined("tololo", tololo["night"])] == [
        tololo["frame_id"]
    ]
    for name in ("stray.fits", "nosuchsite/stray.fits"):
        assert by_name[name]["site"] is None
        assert not by_name[name]["in_partitions"]
    assert {s for s, _ in result.partitions} == set(registry.names)
    # An arrival night the partitions do not cover asks for no run.
    incoming.write_bytes("tololo/garbage2.fits", garbage + b"2")
    late = ingest(incoming, lake, registry, night_range=("2026-01-01", "2026-06-30"))
    (record,) = late.quarantined
    assert record["night"] > "2026-06-30"
    assert not record["in_partitions"]
    assert late.partitions == []


def test_same_bytes_under_a_new_name_are_one_frame(incoming, lake, registry):
    first = ingest(incoming, lake, registry, max_files=10_000)
    name = first.accepted[0]["incoming_path"]
    data = lake.read_bytes(
        lake.raw(first.accepted[0]["site"], NIGHT, first.accepted[0]["frame_id"])
    )
    site = name.split("/")[0]
    incoming.write_bytes(f"{site}/renamed_copy.fits", data)
    second = ingest(incoming, lake, registry)
    assert second.accepted == []
    assert [d["frame_id"] for d in second.duplicates] == [first.accepted[0]["frame_id"]]
    assert len(lake.list(f"raw/{site}/{NIGHT}", ".fits")) == len(
        [a for a in first.accepted if a["site"] == site]
    )


def test_large_drop_is_handled_in_bounded_ticks(incoming, lake, registry):
    total = _count(incoming)
    ticks, seen = 0, 0
    while True:
        result = ingest(incoming, lake, registry, max_files=25)
        if result.batch_id is None:
            break
        n = len(result.accepted) + len(result.duplicates) + len(result.quarantined)
        assert n <= 25
        seen += n
        ticks += 1
        assert result.remaining == total - seen
    assert seen == total
    assert ticks == -(-total // 25)
    assert len(batches_after(lake, None)) == ticks


def test_a_crash_before_incoming_is_cleared_loses_and_repeats_nothing(
    incoming, lake, registry, monkeypatch
):
    """Kill ingestion after the lake copies are written but before any delete."""
    total = _count(incoming)

    def crash(self, rel):
        raise RuntimeError("daemon killed")

    monkeypatch.setattr(Store, "delete", crash)
    with pytest.raises(RuntimeError, match="daemon killed"):
        ingest(incoming, lake, registry, max_files=10_000)
    monkeypatch.undo()
    assert _count(incoming) == total  # nothing was removed from the drop zone
    again = ingest(incoming, lake, registry, max_files=10_000)
    # Everything is found in the lake already: no frame is written twice...
    assert again.accepted == []
    assert len(again.duplicates) == total
    assert _count(incoming) == 0
    raw = [p for s in registry.names for p in lake.list(f"raw/{s}/{NIGHT}", ".fits")]
    assert len(raw) == total
    # ...and the first (crashed) ledger record still names every frame for the sensor.
    first = read_batch(lake, batches_after(lake, None)[0])
    assert len(first["accepted"]) == total


def test_files_still_being_written_are_left_alone(incoming, lake, registry):
    path = incoming.full("tololo/arriving.fits")
    good = incoming.read_bytes(incoming.list("tololo")[0])
    with open(path, "wb") as fh:
        fh.write(good)
    now = time.time()
    os.utime(path, (now, now))
    result = ingest(incoming, lake, registry, max_files=10_000, settle_seconds=60)
    assert "tololo/arriving.fits" not in [
        e["incoming_path"] for e in result.accepted + result.duplicates
    ]
    assert incoming.exists("tololo/arriving.fits")


def test_a_folder_still_receiving_files_waits_to_make_one_batch(incoming, lake, registry):
    """A slow copy: the files that settled wait for the rest of their folder."""
    now = time.time()
    for rel in incoming.list("", recursive=True):  # everything settled long ago...
        os.utime(incoming.full(rel), (now - 600, now - 600))
    tololo = sorted(incoming.list("tololo"))
    os.utime(incoming.full(tololo[0]), (now - 30, now - 30))  # ...but tololo's copy goes on
    partial = incoming.full("tololo/next.fits.partial")
    with open(partial, "wb") as fh:
        fh.write(b"SIMPLE  =")
    os.utime(partial, (now - 1, now - 1))
    taken = {e.rel for e in waiting_files(incoming, settle_seconds=10)}
    assert not any(rel.startswith("tololo/") for rel in taken)
    assert any(rel.startswith("lapalma/") for rel in taken)  # other folders go on
    # The copy done (the last file renamed into place and settled): one batch.
    os.remove(partial)
    os.utime(incoming.full(tololo[0]), (now - 11, now - 11))
    result = ingest(incoming, lake, registry, max_files=10_000, settle_seconds=10)
    assert {a["incoming_path"] for a in result.accepted} >= set(tololo)


def test_frames_outside_the_partitions_are_quarantined(incoming, lake, registry):
    result = ingest(
        incoming, lake, registry, max_files=10_000, night_range=("2026-04-01", "2026-12-31")
    )
    assert result.accepted == []
    assert {q["reason"] for q in result.quarantined} == {"night_out_of_range"}
    assert {q["advice"] for q in result.quarantined} == {REASONS["night_out_of_range"]}


def test_a_crash_before_the_ledger_is_written_still_requests_the_partitions(
    incoming, lake, registry, monkeypatch
):
    total = _count(incoming)
    original = Store.write_json

    def crash_on_ledger(self, rel, obj):
        if rel.startswith("ingest/batches/"):
            raise RuntimeError("daemon killed")
        return original(self, rel, obj)

    monkeypatch.setattr(Store, "write_json", crash_on_ledger)
    with pytest.raises(RuntimeError, match="daemon killed"):
        ingest(incoming, lake, registry, max_files=10_000)
    monkeypatch.undo()
    assert batches_after(lake, None) == []
    again = ingest(incoming, lake, registry, max_files=10_000)
    assert len(again.duplicates) == total
    assert set(again.partitions) == {(s, NIGHT) for s in registry.names}


def test_simulated_truncated_uploads_are_quarantined_under_their_site(tmp_path, registry):
    from telescope_assets.lake import Lake
    from telescope_assets.simulate.network import SimulationConfig, simulate_network

    cfg = SimulationConfig(
        seed=3,
        nights=(NIGHT,),
        sites=("tololo",),
        science_per_night=2,
        stars_per_field=100,
        truncated_uploads=0.3,
    )
    frames = simulate_network(registry, tmp_path / "in", tmp_path / "truth", cfg)
    assert frames.truncated.sum() >= 2
    lake = Lake(str(tmp_path / "lake"))
    result = ingest(Store(str(tmp_path / "in")), lake, registry, max_files=1000)
    assert len(result.quarantined) == frames.truncated.sum()
    assert {q["reason"] for q in result.quarantined} == {"truncated_data"}
    assert {(q["site"], q["night"]) for q in result.quarantined} == {("tololo", NIGHT)}
    assert len(result.accepted) == (~frames.truncated).sum()
