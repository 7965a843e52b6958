"""Helpers of the reliability suite: one good frame of the session's simulated night."""

import pytest


@pytest.fixture(scope="session")
def good_frame(simulated) -> tuple[str, bytes]:
    """``(site, bytes)`` of one good simulated science frame (standard dialect)."""
    from pathlib import Path

    path = sorted(Path(simulated["incoming"], "sidingspring").glob("*_science.fits"))[0]
    return "sidingspring", path.read_bytes()


@pytest.fixture
def sensor_resources(tmp_path, registry):
    """What the ``new_frames`` sensor needs, on an empty drop zone and lake in tmp_path."""
    from telescope_assets.resources import IncomingResource, LakeResource, RegistryResource

    registry_file = tmp_path / "sites.yaml"
    registry_file.write_text(registry.to_yaml())
    (tmp_path / "incoming").mkdir()
    return {
        "lake_resource": LakeResource(root=str(tmp_path / "lake")),
        "incoming": IncomingResource(url=str(tmp_path / "incoming"), settle_seconds=0),
        "registry_resource": RegistryResource(path=str(registry_file)),
    }


def frame_variants(good: bytes, n: int) -> list[bytes]:
    """``n`` distinct frames (other pixels, so other file and pixel hashes) from one.

    The last pixel of the data unit is changed in the bytes; nothing is re-encoded.
    """
    from telescope_assets.science.containers import walk_hdus

    (hdu,) = walk_hdus(good)
    last = hdu.data_offset + hdu.data_bytes - 2
    out = []
    for i in range(n):
        data = bytearray(good)
        data[last : last + 2] = i.to_bytes(2, "big")
        out.append(bytes(data))
    return out
