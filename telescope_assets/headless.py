"""Run the network's jobs without the daemon: what the sensors do, in one process.

The sensors (``new_frames``, ``new_alerts``, ``nightly_reports``) are how a running
deployment reacts to files; a person with a folder of frames and no daemon — a new site's
first nights, an archive to backfill, a laptop — gets the same work from these functions,
in the instance of ``DAGSTER_HOME`` (so every run and materialization shows in the UI
later). ``telescope-ingest`` and ``telescope-demo`` are built on them.

1. :func:`ensure_models`: ``models_job`` once, when a model has no registered versions;
2. :func:`ingest_all`: the drop zone into the lake, batch by batch, with the sensor's
   code (:func:`telescope_assets.ingest.ingest`);
3. :func:`process`: ``frames_job`` per site × night that received frames (earlier nights
   first: a night's masters and references may come from the one before),
   ``followup_job`` where it made alerts, ``site_models_job`` for a provisional site
   with enough subtracted frames (:func:`learn_sites`), ``nightly_job`` per night; the
   ``new_frames`` sensor, if it is started later, begins after these batches.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "IngestTotals",
    "ensure_dagster_home",
    "ensure_models",
    "ingest_all",
    "main",
    "process",
    "summary",
]

#: File names the copy step takes from a folder (what a camera or an archive writes).
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")

#: Run configuration that keeps an in-process run's console quiet (the UI has the logs).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class IngestTotals:
    """What :func:`ingest_all` did: its batches and how many files went where."""

    batches: list[str] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


def ensure_dagster_home() -> Path:
    """``DAGSTER_HOME``, or the current folder when it holds a ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd()).resolve()
    if not (home / "dagster.yaml").exists():
        raise SystemExit(
            f"{home} has no dagster.yaml: run this from the repository root, or set "
            "DAGSTER_HOME to the folder holding the instance's dagster.yaml."
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home


#: Loggers whose INFO lines are not news on a terminal. Lightning resets the level of its
#: package loggers when it is imported, and its messages then reached the terminal twice
#: (its own handler, and the root's): its ``rank_zero`` loggers, which log them, are
#: quietened instead.
QUIET_LOGGERS = {
    "distributed": "WARNING",
    # A local cluster's worker that takes over 4 s to stop is killed: routine at the
    # end of every run, not a problem.
    "distributed.nanny": "ERROR",
    "mlflow": "WARNING",
    "lightning.pytorch": "WARNING",
    "lightning.pytorch.utilities.rank_zero": "WARNING",
    "lightning.fabric.utilities.rank_zero": "WARNING",
    "pytorch_lightning.utilities.rank_zero": "WARNING",
    "lightning_fabric.utilities.rank_zero": "WARNING",
}
#: Library warnings that a person running the demo can do nothing about.
QUIET_WARNINGS = (
    r".*LeafSpec.* is deprecated",  # Lightning's own use of torch's pytree API
    r"The number of training batches .* is smaller than the logging interval",
)


def quiet_libraries() -> None:
    """Progress bars and the summary on the terminal, not the libraries' INFO lines."""
    import logging
    import warnings

    # distributed sets its loggers' levels from its config when it is imported (in this
    # process and in worker processes, which inherit the environment).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def ensure_models(defs, instance, mlflow, launched_by: str) -> None:
    """Run ``models_job`` once when a model has never been registered (about 6 minutes).

    A model that was trained but missed its gate has no champion; that is the gate's
    decision, not something to redo here (the runs that need it say so).
    """
    import dagster as dg
    from mlflow.exceptions import MlflowException

    client = mlflow.client()
    try:
        have = all(
            client.get_registered_model(n) for n in ("frame_quality", "real_bogus", "anomaly")
        )
    except MlflowException:
        have = False
    if have and mlflow.champion("frame_quality") is not None:
        return
    print("training the models (models_job, about 6 minutes on 2 cores) ...", file=sys.stderr)
    job = defs.resolve_job_def("models_job")
    # One execution per model, so that one missing its target (its blocking check
    # fails) does not stop the others in this in-process run.
    batches = [
        ["frame_quality_training_set", "real_bogus_training_set"],
        ["frame_quality_model"],
        ["real_bogus_model"],
        ["anomaly_model"],
    ]
    for keys in batches:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in keys],
            tags={"telescope/launched_by": launched_by},
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            raise_on_error=False,
        )
        for key in keys:
            if not key.endswith("_model"):
                continue
            events = result.asset_materializations_for_node(key)
            if not events:
                print(f"  {key:20s} not trained (see its run in the UI)", file=sys.stderr)
                continue
            meta = events[0].metadata
            print(
                f"  {key:20s} v{meta['registered_version'].value}: {meta['decision'].value}",
                file=sys.stderr,
            )


def ingest_all(incoming, lake, registry, *, settle_seconds: float = 0.0, desc: str = "ingesting"):
    """Ingest every waiting file of the drop zone, 100 per batch as the sensor does.

    Returns
    -------
    IngestTotals
    """
    from tqdm import tqdm

    from telescope_assets.defs.partitions import night_range
    from telescope_assets.ingest import ingest, waiting_files

    totals = IngestTotals()
    bar = tqdm(total=len(waiting_files(incoming)), desc=desc, unit="file", file=sys.stderr)
    while True:
        result = ingest(
            incoming,
            lake,
            registry,
            max_files=100,
            settle_seconds=settle_seconds,
            night_range=night_range(),
        )
        if result.batch_id is None:
            break
        totals.batches.append(result.batch_id)
        totals.accepted += len(result.accepted)
        totals.duplicates += len(result.duplicates)
        totals.quarantined += len(result.quarantined)
        for item in result.quarantined:
            reason = item.get("reason", "unknown")
            totals.quarantine_reasons[reason] = totals.quarantine_reasons.get(reason, 0) + 1
        bar.update(len(result.accepted) + len(result.duplicates) + len(result.quarantined))
    bar.close()
    return totals


def process(defs, instance, lake, batches: list[str], launched_by: str, learn: bool = True):
    """Run the jobs the sensors would launch for ``batches``.

    Returns
    -------
    tuple
        The ``(site, night)`` partitions that ran ``frames_job``, and what failed.

    The sensor asks for one run per batch and partition; here one run per partition does
    the same work, earlier nights first. With ``learn``, a provisional site with enough
    subtracted frames then learns its own real/bogus model (``site_models_job``, what
    the ``site_learning`` sensor asks for), before the nightly reports.
    """
    from tqdm import tqdm

    from telescope_assets.defs.ingest.sensors import run_requests_for

    by_partition: dict = {}
    for request in run_requests_for(lake, batches):
        by_partition.setdefault(request.partition_key, request)
    requests = sorted(
        by_partition.values(),
        key=lambda r: (r.partition_key.keys_by_dimension["night"], r.tags["telescope/site"]),
    )
    tags = {"telescope/launched_by": launched_by}
    frames = defs.resolve_job_def("frames_job")
    followup = defs.resolve_job_def("followup_job")
    failed: list[str] = []
    for request in tqdm(requests, desc="frames_job", unit="partition", file=sys.stderr):
        outcome = frames.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, **tags},
            raise_on_error=False,
            run_config=QUIET,
        )
        if not outcome.success:
            failed.append(f"frames {request.partition_key}")
            continue
        # What the new_alerts sensor does: a follow-up run where alerts were made.
        made = outcome.asset_materializations_for_node("alerts")
        if made and made[0].metadata["n_alerts"].value:
            done = followup.execute_in_process(
                instance=instance,
                partition_key=request.partition_key,
                tags=tags,
                raise_on_error=False,
                run_config=QUIET,
            )
            if not done.success:
                failed.append(f"followup {request.partition_key}")
    if learn:
        failed += learn_sites(
            defs, instance, lake, {r.tags["telescope/site"] for r in requests}, launched_by
        )
    # What the nightly_reports sensor does: one nightly_job run per night, in order.
    nightly = defs.resolve_job_def("nightly_job")
    nights = sorted({r.partition_key.keys_by_dimension["night"] for r in requests})
    for night in tqdm(nights, desc="nightly_job", unit="night", file=sys.stderr):
        done = nightly.execute_in_process(
            instance=instance,
            partition_key=night,
            tags=tags,
            raise_on_error=False,
            run_config=QUIET,
        )
        if not done.success:
            failed.append(f"nightly {night}")
    if batches:
        # The new_frames sensor, started later with no cursor of its own, begins after
        # these batches instead of asking for their runs again.
        lake.write_json(lake.offline_cursor(), {"batch_id": batches[-1]})
    partitions = [
        (r.tags["telescope/site"], r.partition_key.keys_by_dimension["night"]) for r in requests
    ]
    return partitions, failed


def learn_sites(defs, instance, lake, sites: set[str], launched_by: str) -> list[str]:
    """Run ``site_models_job`` for each of ``sites`` that is due; return what failed.

    Due: the ``site_learning`` sensor's rule (``defs/models/sites.py:due_requests``).
    """
    from tqdm import tqdm

    from telescope_assets.defs.models.sites import due_requests

    mlflow = defs.resources["mlflow"]
    job = defs.resolve_job_def("site_models_job")
    failed = []
    for request in tqdm(
        due_requests(lake, sorted(sites), mlflow.tracking_uri),
        desc="site_models_job",
        unit="site",
        file=sys.stderr,
    ):
        done = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, "telescope/launched_by": launched_by},
            raise_on_error=False,
            run_config={**QUIET, **request.run_config},
        )
        if not done.success:
            failed.append(f"site_models {request.partition_key}")
            continue
        meta = done.asset_materializations_for_node("site_real_bogus_model")[0].metadata
        print(f"{request.partition_key}: {meta['decision'].value}", file=sys.stderr)
    return failed


def summary(lake, partitions) -> pd.DataFrame:  # noqa: F821 (pandas is imported lazily)
    """One row per ``(site, night)``: frames, calibration, catalogs, quality, alerts."""
    import pandas as pd

    rows = []
    for site, night in partitions:
        raw = lake.read_manifest("raw_frames", site, night)
        cal = lake.read_manifest("calibrated_frames", site, night)
        quality = lake.read_manifest("frame_quality", site, night)
        alerts = lake.read_manifest("alerts", site, night)
        requests = lake.read_manifest("followup_requests", site, night)
        path = lake.masters_manifest(site, night)
        masters = lake.read_json(path) if lake.exists(path) else {}
        classes = quality.quality_class.value_counts() if len(quality) else pd.Series()
        catalogs = lake.read_manifest("source_catalogs", site, night)
        wcs = int(catalogs.wcs_ok.sum()) if "wcs_ok" in catalogs else 0
        zp = int(catalogs.zero_point.notna().sum()) if "zero_point" in catalogs else 0
        rows.append(
            {
                "site": site,
                "night": night,
                "raw": len(raw),
                "calibrated": int((cal.status == "calibrated").sum()) if len(cal) else 0,
                "quarantined": len(lake.quarantined(site, night)),
                "fallback masters": ",".join(
                    sorted(k for k, v in masters.items() if v and v["fallback"])
                ),
                "sources": int(quality.n_sources.sum()) if len(quality) else 0,
                "wcs/zp": f"{wcs}/{zp}",
                'seeing"': round(float(quality.seeing_arcsec.median()), 2)
                if len(quality)
                else None,
                "good/med/bad": "/".join(str(classes.get(c, 0)) for c in ("good", "medium", "bad")),
                "alerts": len(alerts),
                "new transients": int((alerts.object_kind == "transient").sum())
                if len(alerts)
                else 0,
                "follow-up requests": len(requests),
            }
        )
    return pd.DataFrame(rows)


def _copy_into(incoming, paths: list[Path], site: str | None) -> int:
    """Copy files (and the FITS files under folders) into the drop zone; return how many."""
    from tqdm import tqdm

    files: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES)
            )
            files += [(p, p.relative_to(path).as_posix()) for p in found]
        elif path.is_file():
            files.append((path, path.name))
        else:
            raise SystemExit(f"{path}: no such file or folder")
    prefix = f"{site}/" if site else ""
    for path, rel in tqdm(files, desc="copying into the drop zone", unit="file", file=sys.stderr):
        # Atomic (temporary name, then rename): ingestion never sees half a file.
        incoming.write_bytes(prefix + rel, path.read_bytes())
    return len(files)


def main(argv: list[str] | None = None) -> int:
    """``telescope-ingest``: frames into the lake and through the pipeline, no daemon."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="telescope-ingest",
        description="Ingest frames and run the pipeline on them without the Dagster daemon "
        "(what the sensors would do), in the instance of DAGSTER_HOME.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="files or folders to copy into the drop zone first (FITS files under a "
        "folder); without any, what is already in the drop zone is ingested",
    )
    parser.add_argument(
        "--site",
        help="copy into incoming/<site>/ (needed for sites identified by folder, "
        "identify_by: prefix; harmless otherwise)",
    )
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="ingest into the lake and stop (the sensors or a backfill process it later)",
    )
    parser.add_argument(
        "--no-site-learning",
        action="store_true",
        help="do not let a provisional site learn its own real/bogus model from its "
        "processed nights afterwards (site_models_job; docs/transients.md)",
    )
    args = parser.parse_args(argv)
    home = ensure_dagster_home()
    quiet_libraries()

    import dagster as dg

    from telescope_assets.definitions import defs

    resources = defs.resources
    lake = resources["lake"].get()
    incoming = resources["incoming"].get()
    registry = resources["registry"].get()
    if args.site is not None:
        registry[args.site]  # an unknown site's error names the registry and its sites
    if args.paths:
        n = _copy_into(incoming, args.paths, args.site)
        print(f"copied {n} files into {incoming.url}", file=sys.stderr)
    totals = ingest_all(incoming, lake, registry)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals.quarantine_reasons.items()))
    print(
        f"ingested: {totals.accepted} accepted, {totals.duplicates} duplicates, "
        f"{totals.quarantined} quarantined" + (f" ({reasons})" if reasons else "")
    )
    if totals.quarantined:
        print("  why, and what to do: lake quarantine/<site>/<night>/*.json (docs/sites.md)")
    if args.ingest_only or not totals.batches:
        return 0
    instance = dg.DagsterInstance.get()
    ensure_models(defs, instance, resources["mlflow"], "telescope-ingest")
    partitions, failed = process(
        defs, instance, lake, totals.batches, "telescope-ingest", learn=not args.no_site_learning
    )
    print()
    print(summary(lake, partitions).to_string(index=False))
    print()
    print(f"{len(partitions)} runs of frames_job" + (f"; FAILED: {failed}" if failed else ""))
    print(f"Dagster instance: {home} (runs and materializations: make ui, or the deployment's UI)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
