"""Alert publication survives a run killed between its packets and its table."""

import dagster as dg
import pytest

from telescope_assets.defs.ingest.sensors import reconciler
from telescope_assets.ingest import ingest
from telescope_assets.lake import Store
from telescope_assets.resources import IncomingResource
from telescope_assets.tasks import alerts as alert_tasks
from telescope_assets.tasks.reconcile import unfinished_partitions
from telescope_assets_tests.conftest import ephemeral_instance
from telescope_assets_tests.pipeline import NIGHTS, SITE, run_partition

pytestmark = pytest.mark.slow


def test_a_kill_between_packets_and_table_is_found_and_finished_once(
    resources, registry, two_nights, monkeypatch, tmp_path
):
    resources = {**resources, "incoming": IncomingResource(url=str(two_nights / "incoming"))}
    lake = resources["lake_resource"].get()
    for path in (two_nights / "truth" / "refcat").glob("*.parquet"):
        lake.write_bytes(f"refcat/{path.name}", path.read_bytes())
    ingest(Store(str(two_nights / "incoming")), lake, registry, max_files=10_000)
    assert {(u.site, u.night) for u in unfinished_partitions(lake, settle_seconds=0)} == {
        (SITE, n) for n in NIGHTS
    }  # ingested, never run: the reconciler would ask for both
    instance = ephemeral_instance(tmp_path)
    assert run_partition(resources, NIGHTS[0], instance).success

    # The run of night 2 dies right after writing its packets, before the alerts table.
    original = Store.write_bytes

    def killed(self, rel, data):
        if rel == lake.manifest("alerts", SITE, NIGHTS[1]):
            raise SystemExit("run worker killed")
        return original(self, rel, data)

    monkeypatch.setattr(Store, "write_bytes", killed)
    with pytest.raises(SystemExit):
        run_partition(resources, NIGHTS[1], instance)
    monkeypatch.undo()
    packets = set(lake.list(f"alerts/{SITE}/{NIGHTS[1]}", ".avro"))
    assert packets, "the night had no alerts: nothing tested"
    written = {p: lake.read_bytes(p) for p in packets}

    (found,) = unfinished_partitions(lake, settle_seconds=0)
    assert (found.site, found.night) == (SITE, NIGHTS[1])
    assert "alerts" in found.reason

    # The sensor asks for exactly one run of that partition, once per state.
    monkeypatch.setattr(
        "telescope_assets.tasks.reconcile.unfinished_partitions",
        lambda lake: unfinished_partitions(lake, settle_seconds=0),
    )
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        (request,) = reconciler(ctx).run_requests
    assert request.partition_key.keys_by_dimension == {"site": SITE, "night": NIGHTS[1]}

    again = run_partition(resources, NIGHTS[1], instance)
    assert again.success
    meta = again.asset_materializations_for_node("alerts")[0].metadata
    assert meta["n_packets_written_now"].value == 0  # published once, never twice
    table = lake.read_parquet(lake.manifest("alerts", SITE, NIGHTS[1]))
    assert set(table.packet_path) == packets  # the table names exactly the packets
    for row in table.itertuples():
        assert lake.read_bytes(row.packet_path) == written[row.packet_path]
        packet = alert_tasks.read_packet(written[row.packet_path])
        assert (packet["candid"], packet["objectId"]) == (row.alert_id, row.object_id)
    assert unfinished_partitions(lake, settle_seconds=0) == []
