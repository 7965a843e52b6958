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
    resources = {**resources, "lake": LakeResource(root=str(small_disk / "lake"))}
    ingest(resources["incoming"].get(), resources["lake"].get(), registry, max_files=10_000)
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
