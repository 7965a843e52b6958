"""Bad inputs: every one quarantined with its reason, nothing read that need not be.

Each test drops files into a real local drop zone and runs the real ``ingest``; the
defects of issue 17 that these cases reproduce are named in docs/reliability.md.
"""

import gzip
import io
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from astropy.io import fits

from telescope_assets.ingest import ingest, size_limit
from telescope_assets.lake import REJECTED, Lake, Store
from telescope_assets.science.frames import REASONS, read_image

pytestmark = pytest.mark.fast


@pytest.fixture
def drop(tmp_path) -> Store:
    (tmp_path / "incoming").mkdir()
    return Store(str(tmp_path / "incoming"))


def _set_raw_card(good: bytes, keyword: str, image: bytes) -> bytes:
    """Replace one header card with exactly these (up to 80) bytes."""
    raw = bytearray(good)
    for start in range(0, 2880 * 20, 80):
        if raw[start : start + 8].decode("ascii").strip() == keyword:
            raw[start : start + 80] = image.ljust(80)
            return bytes(raw)
    raise KeyError(keyword)


UNPARSABLE = {
    # keyword, card bytes, reason, words the detail must hold
    "number_with_two_points": ("EXPTIME", b"EXPTIME =               60.0.0", "bad_header"),
    "unclosed_string": ("OBJECT", b"OBJECT  = 'F0930m10", "bad_header"),
    "control_character": ("OBJECT", b"OBJECT  = 'F09\x0130'", "unsafe_header_value"),
    "escape_character": ("FILTER", b"FILTER  = 'r\x1b[31m'", "unsafe_header_value"),
    "delete_character": ("OBJECT", b"OBJECT  = 'F0\x7f'", "unsafe_header_value"),
    "non_ascii": ("OBJECT", "OBJECT  = 'Céline'".encode("latin-1"), "bad_header"),
    "utf8": ("OBJECT", "OBJECT  = 'M31 – core'".encode(), "bad_header"),
    "bad_logical": ("SIMPLE", b"SIMPLE  =                    X", "bad_header"),
}


def test_every_malformed_card_is_quarantined_and_the_night_goes_on(
    drop, lake, registry, good_frame
):
    site, good = good_frame
    for name, (keyword, card, _) in UNPARSABLE.items():
        drop.write_bytes(f"{site}/{name}.fits", _set_raw_card(good, keyword, card))
    drop.write_bytes(f"{site}/good.fits", good)
    result = ingest(drop, lake, registry, max_files=100)  # raised VerifyError before the fix
    assert [a["incoming_path"] for a in result.accepted] == [f"{site}/good.fits"]
    reasons = {q["incoming_path"].split("/")[1][:-5]: q for q in result.quarantined}
    assert set(reasons) == set(UNPARSABLE)
    for name, (keyword, _, reason) in UNPARSABLE.items():
        assert reasons[name]["reason"] == reason, name
        assert reasons[name]["advice"] == REASONS[reason]
        if name != "bad_logical":
            assert keyword in reasons[name]["detail"], name
    assert drop.entries("") == []  # nothing left to fail the next tick


def test_a_header_of_100k_cards_is_refused_before_it_is_parsed(drop, lake, registry, good_frame):
    site, good = good_frame
    cards = b"".join(f"HIERARCH K{i:07d} = {i}".ljust(80).encode() for i in range(100_000))
    drop.write_bytes(f"{site}/long.fits", good[:80] + cards + good[80:])
    (entry,) = ingest(drop, lake, registry).quarantined
    assert entry["reason"] == "bad_header"
    assert "more than 10000 cards" in entry["detail"]


def _rss_growth_kb(script: str) -> int:
    """Peak RSS growth (kB) of a fresh interpreter while it runs ``script``."""
    probe = (
        "import resource, astropy.io.fits, telescope_assets.ingest\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{script}\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_a_gzip_bomb_is_stopped_at_the_camera_limit(drop, tmp_path, registry, good_frame):
    site, good = good_frame
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(good[: 2880 * 2])]
    zeros = bytes(1 << 20)
    parts += [packer.compress(zeros) for _ in range(2048)]  # 2 GiB inflated
    parts.append(packer.flush())
    drop.write_bytes(f"{site}/bomb.fits.gz", b"".join(parts))
    assert drop.entries("")[0].size < 5 << 20
    registry_file = tmp_path / "sites.yaml"
    registry_file.write_text(registry.to_yaml())
    growth = _rss_growth_kb(
        "from telescope_assets.ingest import ingest\n"
        "from telescope_assets.lake import Lake, Store\n"
        "from telescope_assets.registry import load_registry\n"
        f"r = ingest(Store({drop.url!r}), Lake({str(tmp_path / 'lake')!r}), "
        f"load_registry({str(registry_file)!r}))\n"
        "assert [q['reason'] for q in r.quarantined] == ['too_large'], r.quarantined"
    )
    assert growth < 100_000, f"peak RSS grew by {growth} kB"


def test_a_huge_file_is_set_aside_unread_and_uncopied(drop, lake, registry, good_frame):
    site, _ = good_frame
    path = drop.full(f"{site}/huge.fits")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)  # 2 GiB, sparse: costs nothing unless someone reads it
    (entry,) = ingest(drop, lake, registry).quarantined
    assert entry["reason"] == "too_large"
    assert str(size_limit(registry, f"{site}/huge.fits")) in entry["detail"]
    assert os.path.getsize(drop.full(entry["kept_at"])) == 2 << 30  # kept, renamed
    assert entry["kept_at"].startswith(REJECTED + "/")
    assert [p for p in lake.list("quarantine", recursive=True) if p.endswith(".fits")] == []
    assert drop.entries("") == []  # hidden .rejected/ is not ingested again


def _fz(good: bytes, data=None, **options) -> bytes:
    with fits.open(io.BytesIO(good)) as hdul:
        header = hdul[0].header.copy()
        pixels = hdul[0].data if data is None else data
    image = fits.CompImageHDU(pixels, header=header, **options)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(buf)
    return buf.getvalue()


def test_compressed_frames_are_decompressed_and_recognised_as_the_same_pixels(
    tmp_path, registry, good_frame
):
    site, good = good_frame
    variants = {
        "plain.fits": good,
        "gzipped.fits.gz": gzip.compress(good),
        "rice.fits.fz": _fz(good, compression_type="RICE_1"),
    }
    pixel_ids, containers = {}, {}
    for name, data in variants.items():
        drop = Store(str(tmp_path / name / "in"))
        drop.write_bytes(f"{site}/{name}", data)
        (accepted,) = ingest(drop, Lake(str(tmp_path / name / "lake")), registry).accepted
        pixel_ids[name], containers[name] = accepted["pixel_id"], accepted["container"]
        # Downstream reads the kept bytes with the same decoder.
        assert np.array_equal(read_image(data), read_image(good))
    assert containers == {"plain.fits": "fits", "gzipped.fits.gz": "fits.gz", "rice.fits.fz": "fz"}
    assert len(set(pixel_ids.values())) == 1  # lossless: one exposure, however packed


def test_lossy_rice_floats_are_read_within_their_quantisation(drop, lake, registry, good_frame):
    site, good = good_frame
    pixels = read_image(good).astype(np.float32) + 0.25
    drop.write_bytes(f"{site}/float.fits.fz", _fz(good, data=pixels, quantize_level=16))
    (accepted,) = ingest(drop, lake, registry).accepted
    decoded = read_image(lake.read_bytes(lake.raw(site, accepted["night"], accepted["frame_id"])))
    noise = float(np.std(pixels - np.median(pixels)))
    # RICE quantises floats to steps of noise/16: each pixel within half a step.
    assert np.max(np.abs(decoded - pixels)) <= 0.5 * noise / 16 * 1.5


def test_the_sci_extension_of_a_multi_extension_file_is_the_image(drop, lake, registry, good_frame):
    site, good = good_frame
    with fits.open(io.BytesIO(good)) as hdul:
        header, pixels = hdul[0].header.copy(), hdul[0].data.astype(np.float32)
    primary = fits.PrimaryHDU(header=header)
    other = fits.ImageHDU(np.zeros_like(pixels) + 7, name="VAR")
    sci = fits.ImageHDU(pixels, name="SCI")
    buf = io.BytesIO()
    fits.HDUList([primary, other, sci]).writeto(buf)
    drop.write_bytes(f"{site}/mef.fits", buf.getvalue())
    (accepted,) = ingest(drop, lake, registry).accepted
    assert accepted["container"] == "mef"
    assert np.array_equal(read_image(buf.getvalue()), pixels)


def test_checksums_are_verified_where_present(drop, lake, registry, good_frame):
    site, good = good_frame
    with fits.open(io.BytesIO(good)) as hdul:
        buf = io.BytesIO()
        hdul.writeto(buf, checksum=True)
    signed = buf.getvalue()
    altered = bytearray(signed)
    altered[-100] ^= 0x01
    drop.write_bytes(f"{site}/signed.fits", signed)
    drop.write_bytes(f"{site}/altered.fits", bytes(altered))
    result = ingest(drop, lake, registry)
    assert [a["incoming_path"] for a in result.accepted] == [f"{site}/signed.fits"]
    (bad,) = result.quarantined
    assert bad["reason"] == "bad_checksum"
    assert "DATASUM" in bad["detail"]


def test_links_and_special_files_are_refused_without_reading_them(
    drop, lake, registry, good_frame, tmp_path
):
    site, good = good_frame
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("SECRET-MARKER-7f3a")
    folder = drop.full(site)
    os.makedirs(folder)
    os.symlink(secret, f"{folder}/link.fits")
    os.symlink(secret.parent, f"{folder}/linked_folder")
    os.symlink(tmp_path / "nowhere", f"{folder}/dangling.fits")
    os.mkfifo(f"{folder}/pipe.fits")  # reading it would block the sensor for ever
    drop.write_bytes(f"{site}/good.fits", good)
    result = ingest(drop, lake, registry)  # IsADirectoryError before the fix
    assert [a["incoming_path"] for a in result.accepted] == [f"{site}/good.fits"]
    refused = {q["incoming_path"]: q for q in result.quarantined}
    assert set(refused) == {
        f"{site}/{n}" for n in ("link.fits", "linked_folder", "dangling.fits", "pipe.fits")
    }
    assert {q["reason"] for q in refused.values()} == {"not_regular_file"}
    assert "not followed" in refused[f"{site}/link.fits"]["detail"]
    assert secret.read_text() == "SECRET-MARKER-7f3a"  # the target is untouched...
    for rel in lake.list("", recursive=True):  # ...and none of its bytes were copied
        assert b"SECRET-MARKER" not in lake.read_bytes(rel)
    assert os.listdir(folder) == []


def test_a_copy_with_an_edited_header_is_a_duplicate_of_the_first(drop, lake, registry, good_frame):
    site, good = good_frame
    from telescope_assets_tests.badframes import rewrite

    drop.write_bytes(f"{site}/a_first.fits", good)
    for i in range(5):
        drop.write_bytes(f"{site}/b_copy{i}.fits", rewrite(good, OBJECT=f"EDITED{i}"))
    result = ingest(drop, lake, registry)
    (first,) = result.accepted  # before the fix: six frames, six alerts for one object
    assert len(result.duplicates) == 5
    for dup in result.duplicates:
        assert dup["duplicate_kind"] == "pixels"
        assert dup["duplicate_of"] == first["frame_id"]
        assert dup["header_changes"]["OBJECT"][0] == first["object"]
        assert dup["header_changes"]["OBJECT"][1].startswith("EDITED")
    assert len(lake.list(f"raw/{site}/{first['night']}", ".fits")) == 1


def test_a_file_written_in_two_parts_waits_for_its_second_part(drop, lake, registry, good_frame):
    site, good = good_frame
    path = drop.full(f"{site}/slow_upload.fits")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(good[: len(good) // 2])
    first = ingest(drop, lake, registry, truncated_grace_seconds=120)
    assert first.waiting == [f"{site}/slow_upload.fits"]
    assert first.quarantined == []
    assert first.batch_id is None
    with open(path, "ab") as fh:  # the writer comes back after a pause longer than settle
        fh.write(good[len(good) // 2 :])
    (accepted,) = ingest(drop, lake, registry, truncated_grace_seconds=120).accepted
    assert lake.read_bytes(lake.raw(site, accepted["night"], accepted["frame_id"])) == good


def test_a_cut_short_file_is_quarantined_once_its_grace_is_over(drop, lake, registry, good_frame):
    site, good = good_frame
    drop.write_bytes(f"{site}/cut.fits", good[: len(good) // 2])
    old = os.path.getmtime(drop.full(f"{site}/cut.fits")) - 300
    os.utime(drop.full(f"{site}/cut.fits"), (old, old))
    (entry,) = ingest(drop, lake, registry, truncated_grace_seconds=120).quarantined
    assert entry["reason"] == "truncated_data"
    assert entry["site"] == site


def test_a_date_outside_the_partitions_says_so(drop, lake, registry, good_frame):
    site, good = good_frame
    from telescope_assets_tests.badframes import rewrite

    drop.write_bytes(f"{site}/future.fits", rewrite(good, DATE_OBS="2199-01-01T03:00:00"))
    drop.write_bytes(f"{site}/garbled.fits", rewrite(good, DATE_OBS="soon"))
    result = ingest(drop, lake, registry, night_range=("2026-01-01", "2026-12-31"))
    reasons = {q["incoming_path"]: q for q in result.quarantined}
    assert reasons[f"{site}/future.fits"]["reason"] == "night_out_of_range"
    assert "2199" in reasons[f"{site}/future.fits"]["detail"]
    assert reasons[f"{site}/garbled.fits"]["reason"] == "bad_date_obs"
    assert reasons[f"{site}/future.fits"]["advice"] != reasons[f"{site}/garbled.fits"]["advice"]
