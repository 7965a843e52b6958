"""A demo's lake, put through the reliability suite's bad inputs and faults on a copy.

After ``make demo``: checksums every file of ``data/lake``, copies it, and against the copy

1. drops every kind of bad file the suite knows (each quarantine reason, malformed cards,
   links and a FIFO, a 2 GiB sparse file, a gzip bomb) plus gzipped, tile-compressed and
   header-edited copies of the lake's own raw frames, and ingests them;
2. kills an ingestion with SIGKILL in the middle of that, then lets one finish;
3. asks the reconciler which partitions are unfinished (a finished demo has none);
4. reruns ``frames_job`` for one partition (everything is up to date: it must change no
   product; a masters manifest's ``made_now`` flags say which run made each master, and
   may change).

Then it checks that the copy still holds every file of the original with the same bytes
(nothing lost or altered; only additions), that every dropped file is accounted for
(accepted, duplicate or quarantined), and that the original lake was not touched.
Prints a table and exits non-zero if anything was lost. Not a test: it needs a demo.

Usage: ``python bench/lake_integrity.py [--lake data/lake]``
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from tqdm import tqdm


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (hidden temporary files included)."""
    out = {}
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for path in tqdm(files, desc="checksumming", unit="file", leave=False):
        out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def same_masters(original: Path, copy: Path, rel: str) -> bool:
    """Whether a masters manifest differs only in ``made_now`` (which run made a master)."""
    import json

    if not rel.endswith("manifest.json") or not rel.startswith("masters/"):
        return False

    def strip(path: Path) -> dict:
        return {
            k: {kk: vv for kk, vv in v.items() if kk != "made_now"} if isinstance(v, dict) else v
            for k, v in json.loads(path.read_text()).items()
        }

    return strip(original / rel) == strip(copy / rel)


def bad_files(good: bytes, raw_frames: list[bytes]) -> dict[str, bytes]:
    """Every bad or duplicate file the reliability suite drops, built from real frames."""
    from astropy.io import fits

    from telescope_assets_tests.badframes import bad_frames, rewrite

    out = {f"bad_{k.replace(':', '_')}.fits": v for k, v in bad_frames(good).items()}
    start = good.index(b"EXPTIME =")
    for name, card in {
        "card_two_points": b"EXPTIME =               60.0.0",
        "card_control": b"EXPTIME = '6\x010'",
        "card_latin1": "EXPTIME = 'é'".encode("latin-1"),
    }.items():
        data = bytearray(good)
        data[start : start + 80] = card.ljust(80)
        out[f"{name}.fits"] = bytes(data)
    cards = b"".join(f"HIERARCH K{i:07d} = {i}".ljust(80).encode() for i in range(100_000))
    out["long_header.fits"] = good[:80] + cards + good[80:]
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = [packer.compress(good[:5760])]
    bomb += [packer.compress(bytes(1 << 20)) for _ in range(1024)]
    out["bomb.fits.gz"] = b"".join([*bomb, packer.flush()])
    for i, frame in enumerate(raw_frames):
        out[f"dup_gzip_{i}.fits.gz"] = gzip.compress(frame)
        with fits.open(io.BytesIO(frame)) as hdul:
            header, pixels = hdul[0].header.copy(), hdul[0].data
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(pixels, header=header)]).writeto(buf)
        out[f"dup_rice_{i}.fits.fz"] = buf.getvalue()
        out[f"dup_edited_{i}.fits"] = rewrite(frame, OBJECT=f"EDITED{i}")
        out[f"dup_exact_{i}.fits"] = frame
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default="data/lake")
    args = parser.parse_args()
    original = Path(args.lake).resolve()
    if not (original / "raw").is_dir():
        print(f"{original} has no raw/: run `make demo` first", file=sys.stderr)
        return 2
    before = digests(original)
    work = Path(tempfile.mkdtemp(prefix="lake-integrity-"))
    copy, incoming = work / "lake", work / "incoming"
    print(f"copying {len(before)} files to {copy}")
    shutil.copytree(original, copy, symlinks=True)

    from telescope_assets.ingest import ingest, read_batch
    from telescope_assets.lake import Lake, Store
    from telescope_assets.registry import load_registry
    from telescope_assets.tasks.reconcile import unfinished_partitions

    registry = load_registry()
    lake = Lake(str(copy))
    sites = lake.list_dirs("raw")
    site = "sidingspring" if "sidingspring" in sites else sites[0]  # standard keywords
    night = sorted(lake.list_dirs(f"raw/{site}"))[0]
    sidecars = [lake.read_json(p) for p in lake.list(f"raw/{site}/{night}", ".json")]
    science = [s["frame_id"] for s in sidecars if s["frame_type"] == "science"][:3]
    frames = [lake.read_bytes(lake.raw(site, night, fid)) for fid in science]
    dropped = bad_files(frames[0], frames)
    batches_before = {
        Path(rel).stem
        for day in lake.list_dirs("ingest/batches")
        for rel in lake.list(f"ingest/batches/{day}", ".json")
    }
    folder = incoming / site
    folder.mkdir(parents=True)
    for name, data in dropped.items():
        (folder / name).write_bytes(data)
    secret = work / "outside.txt"
    secret.write_text("not a frame")
    os.symlink(secret, folder / "link.fits")
    os.symlink(work, folder / "linked_folder")
    os.mkfifo(folder / "pipe.fits")
    with open(folder / "huge.fits", "wb") as fh:
        fh.truncate(2 << 30)
    n_dropped = len(list(folder.iterdir()))

    # 1-2. Ingest, killed once mid-way, then to the end.
    script = (
        "import sys\nfrom telescope_assets.ingest import ingest\n"
        "from telescope_assets.lake import Lake, Store\n"
        "from telescope_assets.registry import load_registry\n"
        "r = load_registry()\nprint('go', flush=True)\n"
        "while ingest(Store(sys.argv[1]), Lake(sys.argv[2]), r, max_files=3).batch_id: pass\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(incoming), str(copy)], stdout=subprocess.PIPE
    )
    proc.stdout.readline()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    while ingest(Store(str(incoming)), lake, registry, max_files=100).batch_id:
        pass
    accounted = {}
    for day in lake.list_dirs("ingest/batches"):
        for rel in lake.list(f"ingest/batches/{day}", ".json"):
            if Path(rel).stem in batches_before:
                continue  # the demo's own ingestion
            batch = read_batch(lake, Path(rel).stem)
            for kind in ("accepted", "duplicates", "quarantined"):
                for entry in batch[kind]:
                    if entry["incoming_path"].startswith(f"{site}/"):
                        accounted.setdefault(entry["incoming_path"], kind)
    left = [p for p in incoming.rglob("*") if not p.is_dir() or p.is_symlink()]
    left = [p for p in left if ".rejected" not in p.parts]

    # 3. Unfinished partitions of the demo (none expected) and 4. a rerun of one.
    unfinished = unfinished_partitions(lake, settle_seconds=0)
    os.environ["TELESCOPE_LAKE_URL"] = str(copy)
    import dagster as dg

    from telescope_assets.definitions import defs

    key = dg.MultiPartitionKey({"site": site, "night": night})
    rerun = defs.resolve_job_def("frames_job").execute_in_process(
        partition_key=key, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )

    after_copy = digests(copy)
    after_original = digests(original)
    lost = sorted(set(before) - set(after_copy))
    changed = sorted(
        p
        for p in before
        if p in after_copy and after_copy[p] != before[p] and not same_masters(original, copy, p)
    )
    added = len(set(after_copy) - set(before))
    print()
    print(f"{'files in the demo lake':44s} {len(before)}")
    print(f"{'files dropped (bad, duplicate, link, fifo…)':44s} {n_dropped}")
    kinds = {
        k: list(accounted.values()).count(k) for k in ("accepted", "duplicates", "quarantined")
    }
    print(f"{'  accounted for in the ledger':44s} {len(accounted)} {kinds}")
    print(f"{'  left in the drop zone':44s} {len(left)}")
    print(f"{'unfinished partitions in the demo':44s} {len(unfinished)} {unfinished[:3]}")
    print(
        f"{'rerun of frames_job ' + site + ' ' + night:44s} {'ok' if rerun.success else 'FAILED'}"
    )
    print(f"{'files of the demo lost from the copy':44s} {len(lost)} {lost[:5]}")
    print(f"{'files of the demo changed in the copy':44s} {len(changed)} {changed[:5]}")
    print(f"{'files added to the copy':44s} {added}")
    print(f"{'original lake untouched':44s} {after_original == before}")
    ok = (
        not lost
        and not changed
        and not left
        and len(accounted) == n_dropped
        and rerun.success
        and after_original == before
    )
    print("\nlake integrity:", "OK" if ok else "PROBLEMS")
    shutil.rmtree(work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
