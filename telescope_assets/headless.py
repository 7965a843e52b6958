"""Run the network's sensors and jobs without the daemon, in one process.

The sensors (``new_frames``, ``new_alerts``, ``site_learning``, ``nightly_reports``) are
how a running deployment reacts to files; a person with a folder of frames and no
daemon — a new site's first nights, an archive to backfill, a laptop — gets the same
work here: the same sensors are evaluated through Dagster's API (:func:`tick`) and the
runs they ask for are executed in this process, in the instance of ``DAGSTER_HOME`` (so
every run and materialization shows in the UI later, tagged with its sensor and run
key as the daemon tags the runs it launches). ``telescope-ingest`` and
``telescope-demo`` are built on them.

1. :func:`ensure_models`: ``models_job`` once, when a model has no registered versions;
2. :func:`ingest_all`: ``new_frames`` ticked until the drop zone is empty;
3. :func:`process`: the ``frames_job`` runs it asked for, one per site × night (earlier
   nights first: a night's masters and references may come from the one before); then
   ``new_alerts``' follow-up runs, ``site_learning``'s runs for the sites just
   processed, and ``nightly_reports``' runs. The ``new_frames`` sensor, if it is
   started later, begins after these batches.
"""

from __future__ import annotations

import json
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

#: The tags by which the sensor daemon knows the runs it launched (``dagster/...``).
SENSOR_NAME_TAG = "dagster/sensor_name"
RUN_KEY_TAG = "dagster/run_key"

#: File names the copy step takes from a folder (what a camera or an archive writes).
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")

#: Run configuration that keeps an in-process run's console quiet (the UI has the logs).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class IngestTotals:
    """What :func:`ingest_all` did: its batches, where the files went, the runs asked for."""

    batches: list[str] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    #: ``new_frames``' run requests and its cursor after the last tick.
    requests: list = field(default_factory=list)
    cursor: str | None = None

    def add(self, batch_id: str, record: dict) -> int:
        """Count a ledger batch's files; return how many it holds."""
        self.batches.append(batch_id)
        self.accepted += len(record["accepted"])
        self.duplicates += len(record["duplicates"])
        self.quarantined += len(record["quarantined"])
        for item in record["quarantined"]:
            reason = item.get("reason", "unknown")
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + 1
        return sum(len(record[k]) for k in ("accepted", "duplicates", "quarantined"))


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
        ["frame_quality_training_set", "real_bogus_training_set", "transient_type_training_set"],
        ["frame_quality_model"],
        ["real_bogus_model"],
        ["anomaly_model"],
        ["transient_type_model"],
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


def one_shot_resources(defs) -> dict:
    """The definitions' drop zone, taken whole at once (no waiting for uploads).

    A deployment's ``new_frames`` sensor leaves a file younger than ``settle_seconds``
    (an uploader may still be writing it) and a truncated one for
    ``truncated_grace_seconds`` (its writer may append the rest). A one-shot run is
    started by whoever put the files there, after they were written: it takes every file
    now, and a truncated one goes to quarantine at once.
    """
    from telescope_assets.resources import IncomingResource

    incoming = defs.resources["incoming"]
    return {
        "incoming": IncomingResource(
            url=incoming.url,
            s3_endpoint_url=incoming.s3_endpoint_url,
            settle_seconds=0.0,
            truncated_grace_seconds=0.0,
            max_files_per_tick=incoming.max_files_per_tick,
        )
    }


def tick(defs, instance, sensor_name: str, cursor: str | None, resources: dict | None = None):
    """One evaluation of the sensor ``sensor_name`` of ``defs``, as a daemon's tick makes it.

    Returns
    -------
    dagster.SensorExecutionData
        Its run requests, skip message and new cursor.
    """
    import dagster as dg

    from telescope_assets.ops.watch import WATCH_ENV

    # One glance per tick: the long poll (ops/watch.py) is for a daemon's visits.
    os.environ[WATCH_ENV] = "0"
    sensor = defs.resolve_sensor_def(sensor_name)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        sensor_name=sensor_name,
        # Given resources replace the definitions' whole set: merged, not alone.
        resources={**defs.resources, **(resources or {})},
    ) as context:
        return sensor.evaluate_tick(context)


def ingest_all(defs, instance, lake, desc: str = "ingesting") -> IngestTotals:
    """Tick ``new_frames`` until the drop zone is empty, as the daemon would.

    Each tick moves up to ``max_files_per_tick`` files into the lake (or quarantine) and
    asks for runs of every ledger batch after its cursor (batches ingested earlier but
    never processed included). The totals count the batches these ticks made.
    """
    from tqdm import tqdm

    from telescope_assets.ingest import batches_after, read_batch, waiting_files

    resources = one_shot_resources(defs)
    drop_zone = resources["incoming"].get()
    known = set(batches_after(lake, None))
    totals = IngestTotals()
    bar = tqdm(total=len(waiting_files(drop_zone)), desc=desc, unit="file", file=sys.stderr)
    while True:
        data = tick(defs, instance, "new_frames", totals.cursor, resources)
        totals.requests += data.run_requests or []
        totals.cursor = data.cursor
        made = [b for b in batches_after(lake, None) if b not in known]
        if not made:
            break
        for batch_id in made:
            known.add(batch_id)
            bar.update(totals.add(batch_id, read_batch(lake, batch_id)))
    bar.close()
    return totals


def process(defs, instance, lake, totals: IngestTotals, launched_by: str, learn: bool = True):
    """Run what the sensors ask for after ``totals``' ingestion, in this process.

    Returns
    -------
    tuple
        The ``(site, night)`` partitions that ran ``frames_job``, and what failed.

    ``new_frames`` asks for one run per ledger batch and partition; here one run per
    partition does the same work, earlier nights first (a night's masters and references
    may come from the one before). Then ``new_alerts``, ``site_learning`` (with
    ``learn``, for the sites just processed) and ``nightly_reports`` are ticked, each
    from the event log as it was before these runs, and their requests run. Every run
    carries the sensor's name and run key as a daemon's would, so a request that already
    ran (here or by a daemon) is not run again, nor later by a daemon.
    """
    from tqdm import tqdm

    alerts_before = _latest_storage_id(instance, "alerts")
    raw_before = _latest_storage_id(instance, "raw_frames")
    runs = SensorRuns(defs, instance, launched_by)
    requests = _one_per_partition(totals.requests)
    for request in tqdm(requests, desc="frames_job", unit="partition", file=sys.stderr):
        runs.execute("new_frames", request, label=f"frames {request.partition_key}")
    cursor = None if alerts_before is None else str(alerts_before)
    while True:  # new_alerts reads a bounded batch of materializations per tick
        alerts = tick(defs, instance, "new_alerts", cursor)
        for request in alerts.run_requests or []:
            runs.execute("new_alerts", request, label=f"followup {request.partition_key}")
        if alerts.cursor == cursor:
            break
        cursor = alerts.cursor
    partitions = [_site_night(r) for r in requests]
    sites = {site for site, _ in partitions}
    if learn:
        learning = tick(defs, instance, "site_learning", None).run_requests or []
        for request in tqdm(
            [r for r in learning if r.partition_key in sites],
            desc="site_models_job",
            unit="site",
            file=sys.stderr,
        ):
            runs.execute("site_learning", request, label=f"site_models {request.partition_key}")
    nightly = tick(defs, instance, "nightly_reports", json.dumps({"raw_after": raw_before}))
    if not nightly.run_requests:
        print(f"nightly reports: none due ({nightly.skip_message})", file=sys.stderr)
    for request in tqdm(
        sorted(nightly.run_requests or [], key=lambda r: r.partition_key),
        desc="nightly_job",
        unit="night",
        file=sys.stderr,
    ):
        runs.execute("nightly_reports", request, label=f"nightly {request.partition_key}")
    if totals.cursor:
        # The new_frames sensor, started later with no cursor of its own, begins after
        # these batches instead of asking for their runs again.
        lake.write_json(lake.offline_cursor(), {"batch_id": totals.cursor})
    return partitions, runs.failed


class SensorRuns:
    """Runs a sensor's requests in process, tagged as the daemon tags the runs it launches."""

    def __init__(self, defs, instance, launched_by: str):
        self.defs, self.instance, self.launched_by = defs, instance, launched_by
        self.failed: list[str] = []

    def already_ran(self, sensor_name: str, run_key: str) -> bool:
        """Whether a run of ``sensor_name`` with ``run_key`` exists (the daemon's rule)."""
        import dagster as dg

        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}))
        return any(r.tags.get(SENSOR_NAME_TAG) == sensor_name for r in runs)

    def execute(self, sensor_name: str, request, label: str):
        """Run ``request`` unless it ran before; a failure is recorded as ``label``."""
        if request.run_key and self.already_ran(sensor_name, request.run_key):
            return None
        sensor = self.defs.resolve_sensor_def(sensor_name)
        tags = {
            **request.tags,
            SENSOR_NAME_TAG: sensor_name,
            "telescope/launched_by": self.launched_by,
        }
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        done = self.defs.resolve_job_def(sensor.job_name).execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            tags=tags,
            raise_on_error=False,
            run_config={**QUIET, **(request.run_config or {})},
        )
        if not done.success:
            self.failed.append(label)
        elif sensor_name == "site_learning":
            meta = done.asset_materializations_for_node("site_real_bogus_model")[0].metadata
            print(f"{request.partition_key}: {meta['decision'].value}", file=sys.stderr)
        return done


def _one_per_partition(requests: list) -> list:
    """``new_frames``' requests merged per partition (its batches named), by night and site."""
    import dagster as dg

    batches: dict = {}
    for request in requests:
        batches.setdefault(request.partition_key, []).append(request)
    merged = [
        dg.RunRequest(
            partition_key=key,
            tags={
                **same[-1].tags,
                "telescope/batch": ",".join(r.tags["telescope/batch"] for r in same),
            },
        )
        for key, same in batches.items()
    ]
    return sorted(merged, key=lambda r: _site_night(r)[::-1])


def _site_night(request) -> tuple[str, str]:
    """The ``(site, night)`` of a ``frames_job`` request (its ``telescope/partition`` tag)."""
    site, night = request.tags["telescope/partition"].split("|")
    return site, night


def _latest_storage_id(instance, asset: str) -> int | None:
    """The storage id of ``asset``'s newest materialization (None: never materialized)."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0].storage_id if records else None


def summary(lake, partitions) -> pd.DataFrame:  # noqa: F821 (pandas is imported lazily)
    """One row per ``(site, night)``: frames, calibration, catalogs, quality, alerts.

    ``of asteroids``: the alerts of the partition that belong to a tracklet.
    """
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
                "of asteroids": len(lake.read_manifest("moving_objects", site, night)),
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
    lake = resources["lake_resource"].get()
    incoming = resources["incoming"].get()
    if args.site is not None:
        resources["registry_resource"].get()[args.site]  # an unknown site's error names the sites
    if args.paths:
        n = _copy_into(incoming, args.paths, args.site)
        print(f"copied {n} files into {incoming.url}", file=sys.stderr)
    instance = dg.DagsterInstance.get()
    totals = ingest_all(defs, instance, lake)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(totals.quarantine_reasons.items()))
    print(
        f"ingested: {totals.accepted} accepted, {totals.duplicates} duplicates, "
        f"{totals.quarantined} quarantined" + (f" ({reasons})" if reasons else "")
    )
    if totals.quarantined:
        print("  why, and what to do: lake quarantine/<site>/<night>/*.json (docs/sites.md)")
    if args.ingest_only or not totals.requests:
        return 0
    ensure_models(defs, instance, resources["mlflow"], "telescope-ingest")
    partitions, failed = process(
        defs, instance, lake, totals, "telescope-ingest", learn=not args.no_site_learning
    )
    print()
    print(summary(lake, partitions).to_string(index=False))
    print()
    print(f"{len(partitions)} runs of frames_job" + (f"; FAILED: {failed}" if failed else ""))
    print(f"Dagster instance: {home} (runs and materializations: make ui, or the deployment's UI)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
