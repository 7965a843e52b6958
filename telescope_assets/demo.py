"""``telescope-demo``: simulate the network and run the pipeline on the embedded default.

What it does, in order, with a progress bar for each long step:

1. simulates the demo nights of every site into ``data/incoming`` (truth in ``data/truth``);
2. runs ``models_job`` once (training sets, the three models, gated ``champion``
   aliases in the MLflow store under ``models/``);
3. ingests the incoming files exactly as the ``new_frames`` sensor does (same code);
4. runs ``frames_job`` for every site × night that received frames (calibration to
   alerts), and ``followup_job`` where it made alerts (as the ``new_alerts`` sensor
   would), in the Dagster instance of ``DAGSTER_HOME`` (SQLite under ``data/dagster`` by
   default; PostgreSQL in the production profile), so the runs and materializations
   show in the UI;
5. runs ``nightly_job`` for every night (as the ``nightly_reports`` sensor would):
   light curves, variability, anomalies and the nightly report;
6. prints what was produced and where to look.

Running it again does only what is new (nothing, if no frames arrived).
"""

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _ensure_dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd()).resolve()
    if not (home / "dagster.yaml").exists():
        raise SystemExit(
            f"{home} has no dagster.yaml: run this from the repository root, or set "
            "DAGSTER_HOME to the folder holding the instance's dagster.yaml."
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def main(argv: list[str] | None = None) -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(prog="telescope-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--skip-simulation",
        action="store_true",
        help="only ingest and process what is already in data/incoming",
    )
    args = parser.parse_args(argv)
    home = _ensure_dagster_home()
    import logging

    # MLflow and Lightning configure the root logger; dask's cluster chatter is not news.
    # distributed sets its loggers' levels from its config when it is imported (in this
    # process and in worker processes, which inherit the environment).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    for name in ("distributed", "lightning.pytorch", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    import dagster as dg
    from tqdm import tqdm

    from telescope_assets.definitions import defs
    from telescope_assets.defs.ingest.sensors import OFFLINE_CURSOR, run_requests_for
    from telescope_assets.defs.partitions import night_range
    from telescope_assets.ingest import LEDGER, ingest
    from telescope_assets.simulate.network import SimulationConfig, simulate_network

    resources = defs.resources
    lake = resources["lake"].get()
    incoming = resources["incoming"].get()
    registry = resources["registry"].get()
    truth = Path("data/truth")

    # Simulate when nothing was, or when the stores are new (a fresh production stack
    # after an earlier demo): the simulation is deterministic, so redoing it is harmless.
    fresh = not incoming.list("", recursive=True) and not lake.list(LEDGER, recursive=True)
    if not args.skip_simulation and (fresh or not (truth / "frames.parquet").exists()):
        # The simulator writes files; a remote drop zone (S3) gets them uploaded after.
        staging = Path(incoming.url) if incoming.is_local else Path("data/simulated")
        bar = tqdm(desc="1/5 simulating the network", unit="frame", file=sys.stderr)
        simulate_network(
            registry,
            staging,
            truth,
            SimulationConfig(seed=args.seed),
            progress=bar.update,
            on_total=lambda n: setattr(bar, "total", n),
        )
        bar.close()
        if not incoming.is_local:
            files = sorted(p for p in staging.rglob("*") if p.is_file())
            for path in tqdm(files, desc=f"    uploading to {incoming.url}", file=sys.stderr):
                incoming.write_bytes(path.relative_to(staging).as_posix(), path.read_bytes())

    # The simulated network's reference catalogues (its "Gaia") go where the registry
    # says sites find them: refcat/{field}.parquet in the lake.
    for path in sorted((truth / "refcat").glob("*.parquet")):
        rel = f"refcat/{path.name}"
        if not lake.exists(rel):
            lake.write_bytes(rel, path.read_bytes())

    instance = dg.DagsterInstance.get()
    _train_models(defs, instance, resources["mlflow"])

    pending = len(incoming.list("", recursive=True))
    bar = tqdm(total=pending, desc="3/5 ingesting frames", unit="file", file=sys.stderr)
    batches, totals = [], {"accepted": 0, "duplicates": 0, "quarantined": 0}
    while True:
        result = ingest(incoming, lake, registry, max_files=100, night_range=night_range())
        if result.batch_id is None:
            break
        batches.append(result.batch_id)
        for key in totals:
            totals[key] += len(getattr(result, key))
        bar.update(len(result.accepted) + len(result.duplicates) + len(result.quarantined))
    bar.close()

    # The sensor asks for one run per batch and partition; run here, one per partition
    # does the same work (later nights after earlier ones, for master fallbacks).
    by_partition: dict = {}
    for request in run_requests_for(lake, batches):
        by_partition.setdefault(request.partition_key, request)
    requests = sorted(
        by_partition.values(), key=lambda r: (r.tags["telescope/site"], r.partition_key)
    )
    job = defs.resolve_job_def("frames_job")
    followup = defs.resolve_job_def("followup_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    failed = []
    for request in tqdm(requests, desc="4/5 running frames_job", unit="partition", file=sys.stderr):
        outcome = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, "telescope/launched_by": "telescope-demo"},
            raise_on_error=False,
            run_config=quiet,
        )
        if not outcome.success:
            failed.append(request.partition_key)
            continue
        # What the new_alerts sensor does when the daemon runs: a follow-up run for
        # every alerts materialization that has alerts.
        made = outcome.asset_materializations_for_node("alerts")
        if made and made[0].metadata["n_alerts"].value:
            done = followup.execute_in_process(
                instance=instance,
                partition_key=request.partition_key,
                tags={"telescope/launched_by": "telescope-demo"},
                raise_on_error=False,
                run_config=quiet,
            )
            if not done.success:
                failed.append(f"followup {request.partition_key}")
    # What the nightly_reports sensor does: one nightly_job run per night, in order, once
    # its sites are processed (light curves, variability, anomalies, the report).
    nightly = defs.resolve_job_def("nightly_job")
    nights = sorted({r.partition_key.keys_by_dimension["night"] for r in requests})
    for night in tqdm(nights, desc="5/5 running nightly_job", unit="night", file=sys.stderr):
        done = nightly.execute_in_process(
            instance=instance,
            partition_key=night,
            tags={"telescope/launched_by": "telescope-demo"},
            raise_on_error=False,
            run_config=quiet,
        )
        if not done.success:
            failed.append(f"nightly {night}")
    if batches:
        lake.write_json(OFFLINE_CURSOR, {"batch_id": batches[-1]})

    _summary(lake, registry, totals, len(requests), failed, home)
    return 1 if failed else 0


def _train_models(defs, instance, mlflow) -> None:
    """Run models_job once: training sets, three models, gated champions in MLflow."""
    import sys

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
    print("2/5 training the models (models_job, about 6 minutes on 2 cores) ...", file=sys.stderr)
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
            tags={"telescope/launched_by": "telescope-demo"},
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


def _read(lake, rel):
    import pandas as pd

    return lake.read_parquet(rel) if lake.exists(rel) else pd.DataFrame()


def _summary(lake, registry, totals, n_runs, failed, home) -> None:
    import pandas as pd

    rows = []
    for site in registry.names:
        for night in lake.list_dirs(f"raw/{site}"):
            raw = _read(lake, lake.manifest("raw_frames", site, night))
            cal = _read(lake, lake.manifest("calibrated_frames", site, night))
            quality = _read(lake, lake.manifest("frame_quality", site, night))
            alerts = _read(lake, lake.manifest("alerts", site, night))
            requests = _read(lake, lake.manifest("followup_requests", site, night))
            path = f"masters/{site}/{night}/manifest.json"
            masters = lake.read_json(path) if lake.exists(path) else {}
            classes = quality.quality_class.value_counts() if len(quality) else pd.Series()
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
                    'seeing"': round(float(quality.seeing_arcsec.median()), 2)
                    if len(quality)
                    else None,
                    "good/med/bad": "/".join(
                        str(classes.get(c, 0)) for c in ("good", "medium", "bad")
                    ),
                    "alerts": len(alerts),
                    "new transients": int((alerts.object_kind == "transient").sum())
                    if len(alerts)
                    else 0,
                    "follow-up requests": len(requests),
                }
            )
    print()
    print("Produced (site x night):")
    print(pd.DataFrame(rows).to_string(index=False) if rows else "  nothing")
    print()
    print(
        f"ingested: {totals['accepted']} accepted, {totals['duplicates']} duplicates, "
        f"{totals['quarantined']} quarantined; {n_runs} runs of frames_job"
        + (f", FAILED: {failed}" if failed else "")
    )
    print(f"lake:             {lake.url}/  (raw, masters, calibrated, catalogs, manifests)")
    reports = lake.list("reports", ".html", recursive=True)
    if reports:
        print(f"nightly reports:  {', '.join(f'{lake.url}/{r}' for r in reports)}")
    print("truth tables:     data/truth/")
    if os.environ.get("TELESCOPE_DAGSTER_PG_URL"):
        # The production profile (a stack started by telescope-stack, or a deployment).
        print(f"Dagster instance: PostgreSQL (DAGSTER_HOME {home})")
        print("Look at it:       the webserver of the deployment (telescope-stack status)")
    else:
        print(f"Dagster instance: {home}/data/dagster (SQLite)")
        print("Look at it:       make ui   then open http://127.0.0.1:3000 (asset lineage, runs)")


if __name__ == "__main__":
    raise SystemExit(main())
