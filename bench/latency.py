"""Latency from a frame landing in incoming to its alert packet and follow-up requests.

A real instance in a scratch folder, as ``make ui`` runs it: ``telescope-ui`` (``dagster
dev``, webserver + daemon, beside a standing dask cluster) on SQLite, the ``new_frames``
and ``new_alerts`` sensors on, the models of the demo's MLflow store (run ``make demo``
first). ``--per-run-cluster`` runs plain ``dagster dev`` instead, where every run starts
its own dask cluster (the baseline). One site's camera is made 2048²; its first night is processed
beforehand (references come from it); its second night's calibration frames are dropped
and processed; then each science frame of that night, with a bright transient added to
it, is dropped alone and timed until its packet exists and ``followup_job`` has
written its requests. Prints the breakdown per frame (sensor tick, queue, run start,
each step, follow-up) and p50 / p95.

    python bench/latency.py [--frames 8] [--size 2048] [--keep] [--per-run-cluster]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SITE = "tololo"
NIGHTS = ("2026-03-19", "2026-03-20")
PORT = 3917


def _env(work: Path) -> dict[str, str]:
    mlflow_db = REPO / "models" / "mlflow.db"
    if not mlflow_db.exists():
        raise SystemExit("no models/mlflow.db: run `make demo` first (it trains the champions)")
    return {
        **os.environ,
        "DAGSTER_HOME": str(work / "home"),
        "TELESCOPE_LAKE_URL": str(work / "lake"),
        "TELESCOPE_INCOMING_URL": str(work / "incoming"),
        "TELESCOPE_INCOMING_SETTLE_SECONDS": "0",
        "TELESCOPE_ASSETS_REGISTRY": str(work / "sites.yaml"),
        "TELESCOPE_DASK_WORKERS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
        "TELESCOPE_MLFLOW_ARTIFACTS": str(REPO / "models" / "artifacts"),
    }


def _add_transient(path: Path, rng, fwhm_px: float) -> None:
    """A bright new point source near the frame centre (in ADU, on the raw grid), with
    the frame's own PSF width (from the simulator's truth)."""
    from astropy.io import fits

    from telescope_assets.simulate.render import Conditions, Source, render_sources

    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float64)
        ny, nx = data.shape
        x, y = nx / 2 + rng.uniform(-300, 300), ny / 2 + rng.uniform(-300, 300)
        star = render_sources(
            (ny, nx), [Source(np.r_[x], np.r_[y], np.r_[2e5])], fwhm_px, Conditions()
        )
        header = hdul[0].header.copy()
    for key in ("BZERO", "BSCALE"):
        header.remove(key, ignore_missing=True)
    fits.PrimaryHDU((data + star).astype(np.float32), header=header).writeto(path, overwrite=True)


def _prepare(work: Path, size: int, science_per_night: int) -> list[Path]:
    from telescope_assets.registry import load_registry
    from telescope_assets.simulate.network import SimulationConfig, simulate_network

    registry = load_registry().with_camera(SITE, shape=(size, size))
    (work / "sites.yaml").write_text(registry.to_yaml())
    home = work / "home"
    home.mkdir(parents=True)
    config = (REPO / "dagster.yaml").read_text().replace("data/dagster", str(home / "storage"))
    (home / "dagster.yaml").write_text(config)
    print(f"simulating two nights of {SITE} at {size}² ...", flush=True)
    simulate_network(
        registry,
        work / "sim",
        work / "truth",
        SimulationConfig(seed=1, nights=NIGHTS, sites=(SITE,), science_per_night=science_per_night),
    )
    lake = work / "lake" / "refcat"
    lake.mkdir(parents=True)
    for path in (work / "truth" / "refcat").glob("*.parquet"):
        shutil.copy(path, lake / path.name)
    return sorted((work / "sim" / SITE).iterdir())


def _offline_first_night(env) -> None:
    """Night one through ingestion and frames_job, in a child process with the bench env."""
    code = f"""
import dagster as dg
from telescope_assets.definitions import defs
from telescope_assets.ingest import ingest
res = defs.resources
lake = res["lake_resource"].get()
out = ingest(res["incoming"].get(), lake, res["registry_resource"].get(), max_files=10_000)
key = dg.MultiPartitionKey({{"site": "{SITE}", "night": "{NIGHTS[0]}"}})
r = defs.resolve_job_def("frames_job").execute_in_process(
    instance=dg.DagsterInstance.get(), partition_key=key, raise_on_error=False)
assert r.success, "night one failed"
lake.write_json(lake.offline_cursor(), {{"batch_id": out.batch_id}})
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO)


def _drop(src: Path, incoming: Path) -> float:
    dest = incoming / SITE / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name("." + dest.name)
    shutil.copy(src, tmp)
    t0 = time.time()
    os.replace(tmp, dest)
    return t0


def _wait(predicate, timeout: float, what: str):
    start = time.time()
    while time.time() - start < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _runs_after(instance, job: str, t0: float):
    import dagster as dg

    records = instance.get_run_records(dg.RunsFilter(job_name=job), limit=20)
    return [r for r in records if r.create_timestamp.timestamp() >= t0]


def _steps(instance, run_id: str) -> dict[str, float]:
    import dagster as dg

    starts, out = {}, {}
    for record in instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    ).records:
        event = record.event_log_entry
        key = event.step_key
        if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[key] = event.timestamp
        elif key in starts:
            out[key] = event.timestamp - starts[key]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)  # a p50 of 3 frames says little
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--per-run-cluster",
        action="store_true",
        help="plain `dagster dev`: each run starts a dask cluster of its own",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="telescope-latency-"))
    env = _env(work)
    # Enough frames that `--frames` of them have a reference (a field seen on night one).
    files = _prepare(work, args.size, max(6, 2 * args.frames))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER", "TELESCOPE"))})
    import pandas as pd

    frames = pd.read_parquet(work / "truth" / "frames.parquet")
    night_of = {Path(p).name: n for p, n in zip(frames.filename, frames.night, strict=True)}
    kinds = {Path(p).name: k for p, k in zip(frames.filename, frames.kind, strict=True)}
    night1 = [f for f in files if night_of.get(f.name) == NIGHTS[0]]
    night2 = [f for f in files if night_of.get(f.name) == NIGHTS[1]]
    incoming = work / "incoming"
    for f in night1:
        _drop(f, incoming)
    print("processing the first night offline (references come from it) ...", flush=True)
    _offline_first_night(env)
    # Frames with a reference: a field and filter of a usable first-night frame.
    from telescope_assets.lake import Lake
    from telescope_assets.registry import load_registry
    from telescope_assets.tasks.transients import earlier_frames

    usable = earlier_frames(Lake(str(work / "lake")), SITE, NIGHTS[1])
    seen = set(zip(usable.object, usable["filter"], strict=True))
    where = {
        Path(p).name: (f, b)
        for p, f, b in zip(frames.filename, frames.field, frames["filter"], strict=True)
    }
    science = [f for f in night2 if kinds.get(f.name) == "science" and where.get(f.name) in seen]
    # A few more than asked: a frame of bad quality is not searched and does not count.
    science = science[: args.frames + 4]
    calibration = [f for f in night2 if kinds.get(f.name) != "science"]
    rng = np.random.default_rng(0)
    seeing = {Path(p).name: v for p, v in zip(frames.filename, frames.seeing_arcsec, strict=True)}
    scale = load_registry().with_camera(SITE, shape=(args.size, args.size))[SITE].camera.pixel_scale
    for f in science:
        _add_transient(f, rng, seeing[f.name] / scale)

    log = open(work / "dagster-dev.log", "w")  # noqa: SIM115 (lives as long as the server)
    bindir = Path(sys.executable).parent
    if args.per_run_cluster:
        command = [str(bindir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(PORT),
                   "-w", str(REPO / "workspace.yaml")]  # fmt: skip
    else:
        command = [str(bindir / "telescope-ui"), "--port", str(PORT)]
    print(f"starting {' '.join(Path(c).name for c in command[:2])} ...", flush=True)
    server = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait(lambda: _up(PORT), 180, "the webserver")
        for sensor in ("new_frames", "new_alerts"):
            subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), "sensor", "start", sensor,
                 "-w", str(REPO / "workspace.yaml")],
                env=env, cwd=REPO, check=True, capture_output=True,
            )  # fmt: skip
        import dagster as dg

        instance = dg.DagsterInstance.get()
        print(f"dropping {len(calibration)} calibration frames of the second night ...", flush=True)
        t0 = time.time()
        for f in calibration:
            _drop(f, incoming)
        _settle(instance, t0)
        rows = []
        for f in science:
            if len(rows) == args.frames:
                break
            r = _time_one(instance, f, incoming, work)
            if "skipped" in r:
                print(f"{f.name}: no alert, frame not searched ({r['skipped']})", flush=True)
                continue
            rows.append(r)
            print(
                f"{f.name}: alert packet {r['alert']:.1f} s, follow-up requests "
                f"{r['followup']:.1f} s  (tick {r['tick']:.1f}, queue {r['queue']:.1f}, "
                f"run {r['run']:.1f} = {r['steps']}; follow-up run {r['followup_run']:.1f})",
                flush=True,
            )
        alert = np.array([r["alert"] for r in rows])
        follow = np.array([r["followup"] for r in rows])
        follow = follow[np.isfinite(follow)]  # frames whose alerts were not new transients
        how = "per-run dask clusters" if args.per_run_cluster else "a standing dask cluster"
        print(f"\n{len(rows)} frames of {args.size}² on this machine, {how}:")
        print(f"  frame → alert packet:      p50 {np.median(alert):.1f} s, "
              f"p95 {np.percentile(alert, 95):.1f} s")  # fmt: skip
        if len(follow):
            print(f"  frame → follow-up written: p50 {np.median(follow):.1f} s, "
                  f"p95 {np.percentile(follow, 95):.1f} s ({len(follow)} frames)")  # fmt: skip
        print("  target (issue): p50 ≤ 10 s, p95 ≤ 20 s")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch folder kept: {work}")
    return 0


def _settle(instance, t0: float, quiet: float = 8.0) -> None:
    """Wait until every run since ``t0`` is over and no new one came for ``quiet`` s.

    The sensor may split a batch of frames over several ticks, hence several runs; the
    first science frame must not queue behind one of them.
    """
    start = time.time()
    while time.time() - start < 900:
        runs = _runs_after(instance, "frames_job", t0)
        if runs and all(r.dagster_run.is_finished for r in runs):
            time.sleep(quiet)
            if len(_runs_after(instance, "frames_job", t0)) == len(runs):
                return
        time.sleep(0.5)
    raise TimeoutError("the calibration frames' runs did not finish within 900 s")


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _time_one(instance, src: Path, incoming: Path, work: Path) -> dict:
    from telescope_assets.science.frames import frame_id

    fid = frame_id(src.read_bytes())
    lake = work / "lake"
    t0 = _drop(src, incoming)
    packets = lake / "alerts" / SITE / NIGHTS[1]
    searched = lake / "manifests" / "transient_frames" / SITE / f"{NIGHTS[1]}.parquet"

    def outcome():
        found = sorted(packets.glob(f"{fid}-*.avro"))
        if found:
            return found
        if searched.exists():
            import pandas as pd

            table = pd.read_parquet(searched)
            if "status" not in table:
                return None
            status = table.status[table.frame_id == fid]
            if len(status) and status.iloc[0] != "subtracted":
                return str(status.iloc[0])  # e.g. bad_quality: never searched, no alert
        return None

    packet = _wait(outcome, 600, "the alert packet")
    if isinstance(packet, str):
        # Let its run end, so that the next frame does not queue behind it.
        _wait(
            lambda: [
                r for r in _runs_after(instance, "frames_job", t0) if r.dagster_run.is_finished
            ],
            600,
            "the run",
        )
        return {"frame": fid, "skipped": packet}
    t_alert = min(p.stat().st_mtime for p in packet)
    ids = {p.stem for p in packet}

    def finished_followups():
        return [r for r in _runs_after(instance, "followup_job", t0) if r.dagster_run.is_finished]

    # Wait for the follow-up run, not for requests: an alert on a known variable or a
    # star gets none (the planner follows up new transients only).
    follow = _wait(finished_followups, 600, "the follow-up run")[-1]
    queues = lake / "queues"
    written = [q.stat().st_mtime for q in queues.glob("*/*.json") if q.stem in ids]
    t_follow = max(written) if written else float("nan")
    # The follow-up can end before the frame's run does (it closes its dask cluster).
    run = _wait(
        lambda: [r for r in _runs_after(instance, "frames_job", t0) if r.dagster_run.is_finished],
        120,
        "the frame's run",
    )[-1]
    steps = _steps(instance, run.dagster_run.run_id)
    created = run.create_timestamp.timestamp()
    started = run.start_time or created
    ended = run.end_time or started
    return {
        "frame": fid,
        "tick": created - t0,
        "queue": started - created,
        "run": ended - started,
        "steps": ", ".join(f"{k} {v:.1f}" for k, v in steps.items()),
        "alert": t_alert - t0,
        "followup_run": (follow.end_time or 0) - follow.create_timestamp.timestamp(),
        "followup": t_follow - t0,
        "when": dt.datetime.fromtimestamp(t0, dt.UTC).isoformat(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
