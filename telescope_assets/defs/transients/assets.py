"""References, transient candidates, alerts and cross-site follow-up requests."""

import io

import dagster as dg
import numpy as np
import pandas as pd

from telescope_assets import tasks
from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.pools import ALERT_OBJECTS
from telescope_assets.resources import DaskResource, LakeResource, MlflowResource, RegistryResource
from telescope_assets.tasks import alerts as alert_tasks
from telescope_assets.tasks import site_models
from telescope_assets.tasks import transients as tr

__all__ = ["AlertConfig", "alerts", "reference_images", "transient_candidates"]


def _read(store, asset: str, site: str, night: str) -> pd.DataFrame:
    path = store.manifest(asset, site, night)
    return store.read_parquet(path) if store.exists(path) else pd.DataFrame()


def _stack(*tables: pd.DataFrame) -> pd.DataFrame:
    """The non-empty tables one after the other (the last table when all are empty)."""
    parts = [t for t in tables if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else tables[-1]


#: How long ``reference_images`` waits for earlier nights of its site that are queued or
#: running: ``retries`` × ``seconds`` (5 minutes), then it goes on without their frames.
REFERENCE_WAIT = {"retries": 10, "seconds": 30}

_IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def _earlier_runs_in_flight(instance: dg.DagsterInstance, site: str, night: str) -> list[str]:
    """Nights before ``night`` of ``site`` whose runs are queued or running."""
    nights = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(_IN_FLIGHT))):
        other, _, other_site = run.tags.get("dagster/partition", "").partition("|")
        if other_site == site and other < night:
            nights.add(other)
    return sorted(nights)


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"fits"},
    deps=["calibrated_frames", "source_catalogs", "frame_quality"],
)
def reference_images(
    context: dg.AssetExecutionContext, lake: LakeResource, registry: RegistryResource
) -> dg.MaterializeResult:
    """Deep stacks (site, field, filter) of the best frames of earlier nights, for this night.

    One per field and filter observed tonight or usably before (so that it is ready before
    the night's first frame of the field arrives): the sharpest usable frames of earlier nights
    (good or medium quality, WCS and zero point solved, not anomalous), aligned on the
    sharpest frame's refined WCS, scaled to its zero point and stacked with their own
    ``ERR``/``MASK``; the ``FRAMES`` table names them. Content-addressed: rebuilt only when
    better frames exist. The first night of a field has no reference yet. While a run of
    an earlier night of the site is queued or running, the step waits for it (retried,
    ``REFERENCE_WAIT``), then goes on.
    """
    site_name, night = site_night(context)
    store = lake.get()
    site = registry.get()[site_name]
    waiting = _earlier_runs_in_flight(context.instance, site_name, night)
    if waiting and context.retry_number < REFERENCE_WAIT["retries"]:
        # An earlier night of this site is queued or running (a backfill, a slow copy):
        # its frames may make this night's references, so wait for it, a bounded time.
        context.log.info(f"waiting for earlier nights of {site_name} in flight: {waiting}")
        raise dg.RetryRequested(
            max_retries=REFERENCE_WAIT["retries"], seconds_to_wait=REFERENCE_WAIT["seconds"]
        )
    tonight = _read(store, "source_catalogs", site_name, night)
    earlier = tr.earlier_frames(store, site_name, night)
    rows = []
    # Tonight's fields and filters, and every one observed usably before: a field's
    # reference is ready when its first frame of the night arrives (the run of the
    # night's calibration frames builds it), not made on that frame's way to an alert.
    pairs = {(r.object, r.filter) for r in tonight.itertuples()} if len(tonight) else set()
    if len(earlier):
        pairs |= set(zip(earlier.object, earlier["filter"], strict=True))
    pairs = sorted(pairs)
    for field, band in pairs:
        ref_id, _pick = tr.reference_plan(earlier, field, band)
        if not ref_id:
            rows.append(
                {"field": field, "filter": band, "reference_id": "", "status": "no earlier frames"}
            )
            continue
        entry = tr.build_reference(store, site, field, band, earlier)
        rows.append(entry | {"status": "built" if entry["built_now"] else "unchanged"})
    table = pd.DataFrame(rows)
    store.write_parquet(store.manifest("reference_images", site_name, night), table)
    built = int((table.status == "built").sum()) if len(table) else 0
    return dg.MaterializeResult(
        metadata={
            "earlier_nights_in_flight": ", ".join(waiting) or "none",
            "waited_s": context.retry_number * REFERENCE_WAIT["seconds"],
            "n_references": int((table.reference_id != "").sum()) if len(table) else 0,
            "n_built_now": built,
            "n_without_reference": int((table.reference_id == "").sum()) if len(table) else 0,
            "references": md_table(
                table[
                    [
                        c
                        for c in (
                            "field",
                            "filter",
                            "reference_id",
                            "n_frames",
                            "frames",
                            "seeing_arcsec",
                            "status",
                        )
                        if c in table
                    ]
                ]
                if len(table)
                else table
            ),
        }
    )


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"parquet", "pytorch", "dask"},
    deps=[reference_images, "source_catalogs", "frame_quality", "real_bogus_model"],
    check_specs=[dg.AssetCheckSpec("no_failed_frames", asset="transient_candidates")],
)
def transient_candidates(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    registry: RegistryResource,
    dask: DaskResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """≥ 5σ sources in each frame's difference with its reference, scored by ``real_bogus``.

    Frames of classical quality ``bad`` are not searched (status ``bad_quality``).

    Per frame: align the reference onto the frame, match PSFs (Alard–Lupton kernel), subtract,
    detect; 63×63 science / reference / difference cutouts; the ``real_bogus@champion``
    class probabilities and its version.
    """
    site_name, night = site_night(context)
    store = lake.get()
    site = registry.get()[site_name]
    # Asked of a worker (no MLflow in this process), once: before any subtraction, say
    # what to do; every candidate is then scored by this version.
    # The site's own champion once it is qualified, else the network's (provisional).
    model = dask.run(site_models.scoring_model, mlflow.tracking_uri, site_name)
    if model is None:
        raise dg.Failure(description=str(mlflow.no_champion("real_bogus")))
    catalogs = _read(store, "source_catalogs", site_name, night)
    quality = _read(store, "frame_quality", site_name, night)
    refs = _read(store, "reference_images", site_name, night)
    # Incremental: a frame whose catalogue and reference are unchanged keeps its
    # difference and, when the champion is the same version, its scores.
    previous = store.rows_by_frame(store.manifest("transient_frames", site_name, night))
    todo, kept, skipped = tr.plan_subtractions(catalogs, quality, refs, previous, store)
    context.log.info(f"{len(todo)} frames to subtract, {len(kept)} up to date")
    done = dask.map(tasks.Guarded(tr.difference_pair), todo, lake=store, site=site)
    for row in tasks.split_failed(done)[1]:
        context.log.error(f"frame {row['frame_id']}: {row['step']} failed: {row['reason']}")
    frames = pd.DataFrame([*kept, *done, *skipped])
    subtracted = [r | {"rescore": False} for r in kept] + [
        r | {"rescore": True} for r in done if r["status"] == "subtracted"
    ]
    scored = store.manifest("transient_candidates", site_name, night)  # earlier scores
    # On a dask worker, which keeps the model loaded between runs of a standing cluster.
    table = dask.run(
        alert_tasks.score_frames, subtracted, store, mlflow.tracking_uri, model["version"],
        scored, model["name"],
    )  # fmt: skip
    if len(table):
        table["provisional"] = model["provisional"]
    store.write_parquet(store.manifest("transient_candidates", site_name, night), table)
    store.write_parquet(store.manifest("transient_frames", site_name, night), frames)
    n_real = int((table.rb_class == "real").sum()) if len(table) else 0
    return dg.MaterializeResult(
        metadata={
            "n_frames_subtracted": int((frames.status == "subtracted").sum()) if len(frames) else 0,
            "n_subtracted_now": len(done),
            "n_frames_without_reference": int((frames.status == "no_reference").sum())
            if len(frames)
            else 0,
            "n_frames_bad_quality": int((frames.status == "bad_quality").sum())
            if len(frames)
            else 0,
            "n_frames_failed": int((frames.status == "failed").sum()) if len(frames) else 0,
            "n_candidates": len(table),
            "n_real": n_real,
            "real_bogus_model": f"{model['name']}/{model['version']}",
            "provisional": model["provisional"],
            "frames": md_table(frames.drop(columns=["traceback"], errors="ignore")),
        },
        check_results=[failed_frames_check(frames)],
    )


def failed_frames_check(frames: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when a frame's subtraction raised: which frame, which step, why."""
    failed = frames[frames.status == "failed"] if len(frames) else frames
    columns = ["frame_id", "step", "reason"]
    return dg.AssetCheckResult(
        check_name="no_failed_frames",
        passed=not len(failed),
        metadata={
            "n_failed": len(failed),
            "failures": md_table(failed[columns] if len(failed) else pd.DataFrame(columns=columns)),
        },
    )


class AlertConfig(dg.Config):
    """Run configuration of ``alerts``."""

    min_real_score: float = 0.5  # p(real) a candidate needs to become an alert
    # ... at a site not yet qualified by its own examples (tasks/site_models.py)
    provisional_min_real_score: float = 0.9
    min_snr: float = 5.0
    # On a catalogued constant star: at least this fraction of its flux (0.1: 0.1 mag).
    min_star_fraction: float = 0.1


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"avro", "parquet"},
    deps=[transient_candidates],
    pool=ALERT_OBJECTS,
)
def alerts(
    context: dg.AssetExecutionContext,
    config: AlertConfig,
    lake: LakeResource,
    registry: RegistryResource,
) -> dg.MaterializeResult:
    """Candidates with a real score above the threshold, associated with objects, as Avro.

    Ids are the candidates' (stable across reruns and backfills); a known variable or an
    already-alerted object is recognised by position. One packet per alert (ZTF's shape:
    candidate, previous candidates, gzipped FITS cutouts, scores with model versions) at
    ``alerts/<site>/<night>/<alert_id>.avro``, written once. The ``alert_objects`` pool
    runs one ``alerts`` step at a time, so two sites never create one object twice.
    """
    site_name, night = site_night(context)
    store = lake.get()
    site = registry.get()[site_name]
    cands = _read(store, "transient_candidates", site_name, night)
    if len(cands):
        chosen = cands[alert_tasks.passes_threshold(cands, config.min_real_score,
                       config.provisional_min_real_score, config.min_snr,
                       config.min_star_fraction)].copy()  # fmt: skip
    else:
        chosen = pd.DataFrame()
    objects = (
        store.read_parquet(store.alert_objects())
        if store.exists(store.alert_objects())
        else pd.DataFrame()
    )
    # Only objects known before this run can have earlier alerts to look up.
    known_before = set(objects.object_id) if len(objects) else set()
    table = pd.DataFrame()
    n_written = 0
    if len(chosen):
        chosen["alert_id"] = chosen.candidate_id
        parts = []
        for field, group in chosen.groupby("field"):
            refcat, _ = tasks.catalogs.load_reference(store, site, field)
            assoc, objects = alert_tasks.associate(group, refcat, objects)
            parts.append(assoc)
        table = pd.concat(parts, ignore_index=True).sort_values("alert_id", ignore_index=True)
        store.write_parquet(store.alert_objects(), objects)
        history = _alert_history(store, set(table.object_id) & known_before)
        stamps_by_frame = {}
        paths = []
        for row in table.to_dict("records"):
            fid = row["frame_id"]
            if fid not in stamps_by_frame:
                rel = store.candidates(site_name, night, fid, "npz")
                with np.load(io.BytesIO(store.read_bytes(rel)), allow_pickle=False) as z:
                    stamps_by_frame[fid] = dict(zip(z["candidate_id"], z["cutouts"], strict=True))
            previous = [p for p in history.get(row["object_id"], []) if p["mjd"] < row["mjd"]]
            scores = {k: row[k] for k in row if k.startswith("p_")}
            record = alert_tasks.packet(
                row, stamps_by_frame[fid][row["candidate_id"]], previous, scores
            )
            path = alert_tasks.packet_path(row)
            n_written += alert_tasks.write_packet(store, record, path)
            paths.append(path)
        table["packet_path"] = paths
    store.write_parquet(store.manifest("alerts", site_name, night), table)
    kinds = table.object_kind.value_counts().to_dict() if len(table) else {}
    show = [
        "alert_id",
        "object_id",
        "object_kind",
        "ra",
        "dec",
        "mag",
        "snr",
        "p_real",
        "rb_model",
        "provisional",
        "reference_id",
    ]
    return dg.MaterializeResult(
        metadata={
            "n_alerts": len(table),
            "n_packets_written_now": n_written,
            "object_kinds": dg.MetadataValue.json(kinds),
            "min_real_score": config.min_real_score,
            "n_provisional": int(table.provisional.sum()) if len(table) else 0,
            "real_bogus_model": str(table.rb_model.iloc[0]) if len(table) else "",
            "alerts": md_table(table[show] if len(table) else table),
        }
    )


def _alert_history(store, object_ids) -> dict[str, list[dict]]:
    """Earlier alerts of these objects, at every site and night (for ``prv_candidates``)."""
    wanted = set(object_ids)
    out: dict[str, list[dict]] = {}
    if not wanted:  # new objects only: no manifest to read
        return out
    for rel in store.list(store.manifests_folder("alerts"), ".parquet", recursive=True):
        table = store.read_parquet(rel)
        if not len(table) or "object_id" not in table:
            continue
        for row in table[table.object_id.isin(wanted)].to_dict("records"):
            out.setdefault(row["object_id"], []).append(row)
    return out
