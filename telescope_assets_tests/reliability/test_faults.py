"""Faults of the machine under a real materialization: a full disk, a killed worker."""

import hashlib
import os
import subprocess

import dagster as dg
import pytest

from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.ingest import ingest
from telescope_assets.resources import LakeResource
from telescope_assets_tests.conftest import NIGHT

pytestmark = pytest.mark.services

FRAMES = [raw_frames, calibration_masters, calibrated_frames]
KEY = dg.MultiPartitionKey({"site": "tololo", "night": NIGHT})


def _digests(root) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs: a disk that can really fill up (root only, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_fails_the_step_clearly_and_keeps_the_previous_version(
    resources,
    registry,
    small_disk,
):
    resources = {**resources, "lake_resource": LakeResource(root=str(small_disk / "lake"))}
    ingest(
        resources["incoming"].get(), resources["lake_resource"].get(), registry, max_files=10_000
    )
    first = dg.materialize(FRAMES, partition_key=KEY, resources=resources)
    assert first.success
    before = _digests(small_disk / "lake")
    assert any(p.startswith("calibrated/") for p in before)
    stat = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as fh:  # leave less than one calibrated frame
        fh.write(bytes(stat.f_bavail * stat.f_frsize - 64 * 1024))
    again = dg.materialize(
        [calibrated_frames, calibration_masters.to_source_asset(), raw_frames.to_source_asset()],
        partition_key=KEY,
        resources=resources,
        run_config={"ops": {"calibrated_frames": {"config": {"force": True}}}},
        raise_on_error=False,
    )
    assert not again.success
    (failure,) = [e for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.to_string()
    assert "no space left on" in message
    assert "previous version of the file is intact" in message
    assert _digests(small_disk / "lake") == before  # nothing replaced, no partial left


KILLED_RUN = """
import sys, dagster as dg
from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.resources import DaskResource, LakeResource, RegistryResource
lake, registry = sys.argv[1], sys.argv[2]
resources = {
    "lake_resource": LakeResource(root=lake),
    "registry_resource": RegistryResource(path=registry),
    "dask": DaskResource(n_workers=1, processes=False),
}
print("ready", flush=True)
dg.materialize(
    [calibrated_frames, calibration_masters.to_source_asset(), raw_frames.to_source_asset()],
    partition_key=dg.MultiPartitionKey({"site": "tololo", "night": sys.argv[3]}),
    resources=resources,
    run_config={"ops": {"calibrated_frames": {"config": {"force": True}}}},
)
print("finished", flush=True)
"""


def _complete(path) -> bool:
    from astropy.io import fits

    with fits.open(path, checksum=True) as hdul:
        return all(h.verify_checksum() == 1 and h.verify_datasum() == 1 for h in hdul)


@pytest.mark.slow
def test_a_run_worker_killed_mid_frame_leaves_whole_files_and_a_rerun_is_byte_identical(
    resources, registry, registry_file, tmp_path
):
    import sys
    import time

    lake = resources["lake_resource"].get()
    ingest(resources["incoming"].get(), lake, registry, max_files=10_000)
    assert dg.materialize(FRAMES, partition_key=KEY, resources=resources).success
    clean = _digests(lake.root)
    calibrated = sorted(p for p in clean if p.startswith("calibrated/"))
    assert len(calibrated) == 3
    args = [sys.executable, "-c", KILLED_RUN, lake.root, str(registry_file), NIGHT]
    for pause in (2.0, 3.0, 4.0):  # each kill lands at another point of the step
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(pause)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        for rel in calibrated:  # whole (checksums hold) and what a clean run writes
            assert _complete(os.path.join(lake.root, rel))
            assert _digests(lake.root)[rel] == clean[rel]
    again = dg.materialize(
        [calibrated_frames, calibration_masters.to_source_asset(), raw_frames.to_source_asset()],
        partition_key=KEY,
        resources=resources,
        run_config={"ops": {"calibrated_frames": {"config": {"force": True}}}},
    )
    assert again.success
    after = _digests(lake.root)
    assert {p: after[p] for p in calibrated} == {p: clean[p] for p in calibrated}
