"""``telescope-demo``: simulate the network and run the pipeline on the embedded default.

What it does, in order, with a progress bar for each long step:

1. simulates the demo nights of every site into ``data/incoming`` (truth in ``data/truth``);
2. runs ``models_job`` once (training sets, the four models, gated ``champion``
   aliases in the MLflow store under ``models/``);
3. evaluates the ``new_frames`` sensor, tick after tick, until the drop zone is empty
   (each tick ingests a batch and asks for runs);
4. runs the ``frames_job`` runs it asked for (calibration to alerts), then evaluates
   ``new_alerts`` and runs the ``followup_job`` runs it asks for, in the Dagster
   instance of ``DAGSTER_HOME`` (SQLite under ``data/dagster`` by default; PostgreSQL in
   the production profile), so the runs and materializations show in the UI;
5. evaluates ``nightly_reports`` and runs its ``nightly_job`` runs: light curves,
   variability, anomalies and the nightly report;
6. prints what was produced and where to look.

Steps 2–5 are :mod:`telescope_assets.headless`, which `telescope-ingest` runs on any
folder of frames. The sensors are the deployment's own, evaluated through Dagster's API.

Running it again does only what is new (nothing, if no frames arrived).
"""

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


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
    from telescope_assets import headless

    home = headless.ensure_dagster_home()
    headless.quiet_libraries()

    import dagster as dg
    from tqdm import tqdm

    from telescope_assets.definitions import defs
    from telescope_assets.simulate.network import SimulationConfig, simulate_network

    resources = defs.resources
    lake = resources["lake_resource"].get()
    incoming = resources["incoming"].get()
    registry = resources["registry_resource"].get()  # the site registry
    truth = Path("data/truth")

    # Simulate when nothing was, or when the stores are new (a fresh production stack
    # after an earlier demo): the simulation is deterministic, so redoing it is harmless.
    fresh = not incoming.list("", recursive=True) and not lake.list(lake.LEDGER, recursive=True)
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
        rel = lake.refcat(path.name)
        if not lake.exists(rel):
            lake.write_bytes(rel, path.read_bytes())

    instance = dg.DagsterInstance.get()
    headless.ensure_models(defs, instance, resources["mlflow"], "telescope-demo")
    totals = headless.ingest_all(defs, instance, lake, desc="3/5 ingesting frames (new_frames)")
    print("4/5 and 5/5: the runs the sensors ask for", file=sys.stderr)
    # The demo's sites stay provisional: learning their own real/bogus (site_models_job)
    # would add minutes per site; docs/transients.md says how to run it.
    partitions, failed = headless.process(
        defs, instance, lake, totals, "telescope-demo", learn=False
    )

    _summary(lake, registry, totals, len(partitions), failed, home)
    return 1 if failed else 0


def _summary(lake, registry, totals, n_runs, failed, home) -> None:
    from telescope_assets.headless import summary

    every = [
        (site, night) for site in registry.names for night in lake.list_dirs(lake.raw_folder(site))
    ]
    table = summary(lake, every)
    print()
    print("Produced (site x night):")
    print(table.to_string(index=False) if len(table) else "  nothing")
    print()
    print(
        f"ingested: {totals.accepted} accepted, {totals.duplicates} duplicates, "
        f"{totals.quarantined} quarantined; {n_runs} runs of frames_job"
        + (f", FAILED: {failed}" if failed else "")
    )
    print(f"lake:             {lake.url}/  (raw, masters, calibrated, catalogs, manifests)")
    reports = lake.list(lake.report(), ".html", recursive=True)
    if reports:
        print(f"nightly reports:  {', '.join(lake.url_of(r) for r in reports)}")
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
