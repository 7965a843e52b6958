"""Layer 3: references, candidates, alerts and follow-up over two simulated nights."""

import io
import uuid

import dagster as dg
import numpy as np
import pandas as pd

from telescope_assets.defs.models.sites import site_real_bogus_model
from telescope_assets.defs.transients.assets import reference_images, transient_candidates
from telescope_assets.ingest import ingest
from telescope_assets.lake import Store
from telescope_assets.resources import IncomingResource
from telescope_assets.tasks import alerts as alert_tasks
from telescope_assets_tests.conftest import ephemeral_instance
from telescope_assets_tests.pipeline import MODELS, NIGHTS, SITE, run_partition


def test_two_nights_give_references_alerts_and_followups_and_reruns_add_nothing(
    resources, two_nights, registry, tmp_path
):
    resources = {
        **resources,
        "incoming": IncomingResource(url=str(two_nights / "incoming"), settle_seconds=0),
    }
    lake = resources["lake_resource"].get()
    for path in (two_nights / "truth" / "refcat").glob("*.parquet"):
        lake.write_bytes(f"refcat/{path.name}", path.read_bytes())
    ingest(Store(str(two_nights / "incoming")), lake, registry, max_files=10_000)
    instance = ephemeral_instance(tmp_path)

    first = run_partition(resources, NIGHTS[0], instance)
    assert first.success
    ref_meta = first.asset_materializations_for_node("reference_images")[0].metadata
    assert ref_meta["n_references"].value == 0  # nothing earlier to stack

    second = run_partition(resources, NIGHTS[1], instance)
    assert second.success
    refs = lake.read_parquet(lake.manifest("reference_images", SITE, NIGHTS[1]))
    built = refs[refs.reference_id != ""]
    assert len(built) >= 1
    night1 = set(lake.read_parquet(lake.manifest("source_catalogs", SITE, NIGHTS[0])).frame_id)
    for ref in built.itertuples():
        # Provenance: the reference's frames are earlier frames of this field and filter.
        assert set(ref.frames.split(",")) <= night1
        with lake.read_fits(ref.path) as hdul:
            assert set(hdul["FRAMES"].data["frame_id"]) == set(ref.frames.split(","))
            assert hdul["SCI"].data.shape == hdul["ERR"].data.shape == hdul["MASK"].data.shape
            assert np.isfinite(hdul["SCI"].data).all()

    frames = lake.read_parquet(lake.manifest("transient_frames", SITE, NIGHTS[1]))
    sub = frames[frames.status == "subtracted"]
    assert len(sub) >= 1
    quality = lake.read_parquet(lake.manifest("frame_quality", SITE, NIGHTS[1]))
    bad = set(quality.frame_id[quality.quality_class == "bad"])
    assert not bad & set(sub.frame_id)  # bad frames are never searched
    assert bad <= set(frames.frame_id[frames.status == "bad_quality"])
    assert (sub.photometric_scale.between(0.8, 1.25)).all()  # same zero point system
    cands = lake.read_parquet(lake.manifest("transient_candidates", SITE, NIGHTS[1]))
    meta = second.asset_materializations_for_node("transient_candidates")[0].metadata
    assert meta["real_bogus_model"].value == "real_bogus/1"
    # The site has no champion of its own yet: its candidates and alerts are provisional.
    assert meta["provisional"].value is True
    assert cands.provisional.all()
    assert "star_fraction" in cands  # residuals of catalogued constant stars are measured
    table = lake.read_parquet(lake.manifest("alerts", SITE, NIGHTS[1]))
    assert len(table) == len(cands[cands.snr >= 5.0])
    if len(table):
        assert set(table.rb_model) == {"real_bogus/1"}
        assert set(table.reference_id) <= set(built.reference_id)
        packet = alert_tasks.read_packet(lake.read_bytes(table.packet_path.iloc[0]))
        assert packet["candid"] == table.alert_id.iloc[0]
        assert packet["candidate"]["frame_id"] in set(sub.frame_id)
        assert packet["provisional"] is True
        assert table.provisional.all()

    follow1 = second.asset_materializations_for_node("followup_requests")[0].metadata
    n_transients = int((table.object_kind == "transient").sum()) if len(table) else 0
    assert follow1["n_alerts_planned_now"].value == n_transients
    planned = lake.read_parquet(lake.manifest("followup_requests", SITE, NIGHTS[1]))

    # A rerun scores only frames whose difference was redone: mark a kept score.
    assert len(cands) > 0
    marked = cands.copy()
    marked.loc[0, "p_real"] = 0.123456
    lake.write_parquet(lake.manifest("transient_candidates", SITE, NIGHTS[1]), marked)

    # A rerun (or a backfill) of the same night: the same alerts, nothing written twice.
    again = run_partition(resources, NIGHTS[1], instance)
    assert again.success
    meta = again.asset_materializations_for_node("transient_candidates")[0].metadata
    assert meta["n_subtracted_now"].value == 0
    rescored = lake.read_parquet(lake.manifest("transient_candidates", SITE, NIGHTS[1]))
    assert rescored.candidate_id.tolist() == cands.candidate_id.tolist()
    assert rescored.p_real.iloc[0] == 0.123456  # kept, not scored again
    np.testing.assert_array_equal(rescored.p_real.iloc[1:], cands.p_real.iloc[1:])
    table2 = lake.read_parquet(lake.manifest("alerts", SITE, NIGHTS[1]))
    assert table2.alert_id.tolist() == table.alert_id.tolist()
    assert (
        again.asset_materializations_for_node("alerts")[0].metadata["n_packets_written_now"].value
        == 0
    )
    follow = again.asset_materializations_for_node("followup_requests")[0].metadata
    assert follow["n_written_now"].value == 0
    assert follow["n_alerts_planned_now"].value == 0  # planned once, by the first run
    requests = lake.read_parquet(lake.manifest("followup_requests", SITE, NIGHTS[1]))
    pd.testing.assert_frame_equal(requests, planned)
    assert SITE not in set(requests.get("site", []))

    # The site learns its own bogus from these nights: fakes with its own PSF go through
    # its whole subtraction; four small frames are too few to judge it, so it stays
    # provisional (the gate's mechanics: tasks/test_site_models.py).
    learned = dg.materialize(
        [site_real_bogus_model, transient_candidates, *MODELS],
        selection=[site_real_bogus_model],
        partition_key=SITE,
        resources=resources,
        instance=instance,
        run_config={"ops": {"site_real_bogus_model": {"config": {"passes": 1}}}},
    )
    assert learned.success
    meta = learned.asset_materializations_for_node("site_real_bogus_model")[0].metadata
    counts = meta["examples"].value
    assert counts["frames"] == len(sub)
    assert counts["fakes_injected"] >= 10 * len(sub)
    # Fakes of S/N 6-40 on unmasked sky: nearly all recovered by the production code.
    assert counts["fakes_recovered"] >= 0.8 * counts["fakes_injected"]
    assert counts["bogus_candidates"] <= len(cands)
    assert "too few held-out examples" in meta["decision"].value
    check = learned.get_asset_check_evaluations()[0]
    assert check.check_name == "site_qualified"
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    report = lake.read_json(f"site_models/{SITE}/real_bogus.json")
    assert report["site_champion"] is None
    assert (
        report["n_train"] + report["n_eval"]
        == counts["fakes_recovered"] + counts["bogus_candidates"]
    )
    with np.load(io.BytesIO(lake.read_bytes(f"training/real_bogus_{SITE}/train.npz"))) as z:
        assert z["x"].shape[1:] == (3, 63, 63)
        assert set(np.unique(z["y"])) <= {0, 1, 2, 3, 4}


def test_references_wait_for_an_earlier_night_in_flight(resources, monkeypatch, tmp_path):
    """A backfill's later night waits (bounded) while an earlier night of its site runs."""
    from telescope_assets.defs.transients import assets as transient_assets

    monkeypatch.setattr(transient_assets, "REFERENCE_WAIT", {"retries": 2, "seconds": 0})
    instance = ephemeral_instance(tmp_path)
    earlier = dg.DagsterRun(
        job_name="frames_job",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,  # QUEUED counts too (it needs a code origin)
        tags={"dagster/partition": f"{NIGHTS[0]}|{SITE}"},
    )
    instance.add_run(earlier)
    other_site = dg.DagsterRun(
        job_name="frames_job",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": f"{NIGHTS[0]}|lapalma"},
    )
    instance.add_run(other_site)

    def references(night):
        result = dg.materialize(
            [reference_images],
            partition_key=dg.MultiPartitionKey({"site": SITE, "night": night}),
            resources={
                "lake_resource": resources["lake_resource"],
                "registry_resource": resources["registry_resource"],
            },
            instance=instance,
        )
        assert result.success
        events = result.all_node_events
        retries = sum(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in events)
        meta = result.asset_materializations_for_node("reference_images")[0].metadata
        return retries, meta["earlier_nights_in_flight"].value

    # Night 2 waits for night 1 of its own site (not for another site), then goes on.
    assert references(NIGHTS[1]) == (2, NIGHTS[0])
    # Night 1 waits for nothing; nor does night 2 once night 1's run has ended.
    assert references(NIGHTS[0]) == (0, "none")
    instance.report_run_canceled(earlier)
    assert references(NIGHTS[1]) == (0, "none")


def test_a_failed_subtraction_fails_the_check_naming_frame_step_and_reason():
    from telescope_assets.defs.transients.assets import failed_frames_check

    frames = pd.DataFrame(
        [
            {"frame_id": "a", "status": "subtracted"},
            {"frame_id": "b", "status": "failed", "step": "difference_pair",
             "reason": "ValueError: only 2 usable kernel stamps (need 3)", "traceback": "..."},
            {"frame_id": "c", "status": "bad_quality"},
        ]
    )  # fmt: skip
    check = failed_frames_check(frames)
    assert not check.passed
    assert check.metadata["n_failed"].value == 1
    assert "difference_pair" in check.metadata["failures"].value
    assert "only 2 usable kernel stamps" in check.metadata["failures"].value
    assert failed_frames_check(frames[frames.status != "failed"]).passed
    assert failed_frames_check(pd.DataFrame()).passed
