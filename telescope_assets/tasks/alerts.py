"""Alerts: real/bogus scores, association with known objects, Avro packets (ZTF's shape).

An alert's id is its candidate's id (``<frame>-x<xxxx>y<yyyy>``, the frame and the pixel
of the detection), deterministic for a frame and its reference, so a rerun or a backfill
rewrites the same alerts and never adds a second one; packets are written once. Objects
are associated by position (2″): a reference-catalogue star is a known (variable) star;
an earlier alert's object keeps its id; anything else is a new object
``TA<yymmdd><hash>``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import Site
from telescope_assets.science.thumbnails import normalise_stack

__all__ = [
    "ALERT_SCHEMA",
    "MATCH_RADIUS_ARCSEC",
    "AlertThresholds",
    "associate",
    "issue_alerts",
    "packet",
    "passes_threshold",
    "read_packet",
    "score",
    "write_packet",
]

MATCH_RADIUS_ARCSEC = 2.0
SCHEMA_VERSION = "ta-1.1"  # 1.1: provisional

_CANDIDATE_FIELDS = [
    ("jd", "double"),
    ("candid", "string"),
    ("site", "string"),
    ("night", "string"),
    ("filter", "string"),
    ("field", "string"),
    ("isdiffpos", "string"),
    ("xpos", "float"),
    ("ypos", "float"),
    ("ra", "double"),
    ("dec", "double"),
    ("magap", "float"),
    ("sigmagap", "float"),
    ("flux", "float"),
    ("fluxerr", "float"),
    ("snr", "float"),
    ("fwhm", "float"),
    ("magzpsci", "float"),
    ("rb", "float"),
    ("rb_class", "string"),
    ("rb_model", "string"),
    ("reference_id", "string"),
    ("frame_id", "string"),
]


def _candidate_schema(name: str) -> dict:
    return {
        "type": "record",
        "name": name,
        "fields": [
            {"name": n, "type": t if n in ("jd", "candid", "ra", "dec") else ["null", t]}
            for n, t in _CANDIDATE_FIELDS
        ],
    }


_CUTOUT = {
    "type": "record",
    "name": "cutout",
    "fields": [{"name": "fileName", "type": "string"}, {"name": "stampData", "type": "bytes"}],
}

#: The packet: ZTF's top level (``schemavsn``, ``publisher``, ``objectId``, ``candid``,
#: ``candidate``, ``prv_candidates``, three gzipped FITS cutouts) plus the object class and
#: the scores with their model versions, and whether the alert is provisional.
ALERT_SCHEMA = {
    "type": "record",
    "name": "alert",
    "namespace": "telescope_assets",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "publisher", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "string"},
        {"name": "object_kind", "type": "string"},
        {"name": "candidate", "type": _candidate_schema("candidate")},
        {
            "name": "prv_candidates",
            "type": ["null", {"type": "array", "items": _candidate_schema("prv_candidate")}],
        },
        {"name": "cutoutScience", "type": ["null", _CUTOUT]},
        {"name": "cutoutTemplate", "type": ["null", "cutout"]},
        {"name": "cutoutDifference", "type": ["null", "cutout"]},
        {
            "name": "scores",
            "type": {"type": "map", "values": "float"},
        },
        {"name": "model_versions", "type": {"type": "map", "values": "string"}},
        # True until the site is qualified by its own examples (tasks/site_models.py):
        # scored by the network model, held to a higher threshold.
        {"name": "provisional", "type": "boolean", "default": False},
    ],
}


def score_frames(
    frames: list[dict],
    lake: Lake,
    tracking_uri: str,
    version: str,
    scored_path: str | None = None,
    name: str = "real_bogus",
) -> pd.DataFrame:
    """Score every candidate of these subtracted frames with ``<name>/<version>``.

    One task on a dask worker, which keeps the model loaded between runs. Returns the
    candidates with ``p_<class>``, ``rb_class`` and ``rb_model``, in the order of
    ``frames``. ``name`` is the network's model (``real_bogus``) or a site's own
    (``real_bogus_<site>``). ``scored_path`` names earlier scores (the partition's last
    table, read here on the worker): a frame's rows there are kept when they came from
    this model version and the frame's ``rescore`` is false (its difference was not
    redone), so a run of the night's hundredth frame scores that frame's candidates,
    not the whole night's again.
    """
    from telescope_assets.ml import inference
    from telescope_assets.ml.labels import RB_CLASSES

    model = f"{name}/{version}"
    reusable = {}
    scored = lake.read_parquet(scored_path) if scored_path and lake.exists(scored_path) else None
    if scored is not None and len(scored) and "rb_model" in scored:
        same = scored[scored.rb_model == model]
        reusable = {fid: rows for fid, rows in same.groupby("frame_id", sort=False)}
    net, device = None, "cpu"
    tables = []
    for row in frames:
        if not row.get("rescore", True) and row["frame_id"] in reusable:
            tables.append(reusable[row["frame_id"]])
            continue
        cands = lake.read_parquet(row["candidates_path"])
        if not len(cands):
            continue
        if net is None:  # not before a frame has candidates to score
            net = inference.scoring_model(tracking_uri, name, version, "real_bogus")
            device = inference.inference_device()
        with np.load(io.BytesIO(lake.read_bytes(row["cutouts_path"])), allow_pickle=False) as z:
            stamps = z["cutouts"]
        probs = score(net, stamps, RB_CLASSES, device)
        for i, name in enumerate(RB_CLASSES):
            cands[f"p_{name}"] = probs[:, i]
        cands["rb_class"] = np.asarray(RB_CLASSES)[probs.argmax(1)]
        tables.append(cands)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(table):
        table["rb_model"] = model
    return table


def passes_threshold(
    cands: pd.DataFrame,
    min_real: float,
    provisional_min_real: float,
    min_snr: float,
    min_star_fraction: float = 0.0,
) -> pd.Series:
    """Which candidates become alerts: p(real) and S/N above the thresholds.

    A provisional candidate (its site not yet qualified, ``provisional`` true) needs
    ``provisional_min_real`` instead of ``min_real``. A candidate on a catalogued
    constant star needs a difference flux of at least ``min_star_fraction`` of the
    star's (column ``star_fraction``; tables without it are not cut).
    """
    provisional = (
        cands.provisional.fillna(False).astype(bool)
        if "provisional" in cands
        else pd.Series(False, index=cands.index)
    )
    needed = np.where(provisional, provisional_min_real, min_real)
    small = (
        cands.star_fraction.fillna(np.inf) < min_star_fraction
        if "star_fraction" in cands
        else False
    )
    return (cands.p_real >= needed) & (cands.snr >= min_snr) & ~small


#: Triplets per forward pass. Small batches keep a layer's activations in the CPU's
#: caches: 3-4x the triplets/s of one batch of thousands (bench/inference.py).
SCORE_BATCH = 64


def score(net, stamps: np.ndarray, classes: tuple[str, ...], device: str = "cpu") -> np.ndarray:
    """Class probabilities of raw science/reference/difference cutouts (n, 3, 63, 63).

    ``net`` as :func:`telescope_assets.ml.inference.for_inference` gives it (or any
    module of the same signature), on ``device``.
    """
    import torch

    if not len(stamps):
        return np.zeros((0, len(classes)), np.float32)
    x = torch.as_tensor(normalise_stack(stamps))
    with torch.inference_mode():
        logits = [
            net(x[i : i + SCORE_BATCH].to(device)).float().cpu()
            for i in range(0, len(x), SCORE_BATCH)
        ]
    return torch.softmax(torch.cat(logits), 1).numpy()


def _sep_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Small-angle separations (arcsec) between one position and arrays."""
    dra = (np.asarray(ra2) - ra1) * np.cos(np.radians(dec1))
    return np.hypot(dra, np.asarray(dec2) - dec1) * 3600.0


def _new_object_id(night: str, ra: float, dec: float) -> str:
    digest = hashlib.sha256(f"{ra:.5f},{dec:.5f}".encode()).hexdigest()[:6]
    return f"TA{night[2:4]}{night[5:7]}{night[8:10]}{digest}"


def associate(
    alerts: pd.DataFrame, refcat: pd.DataFrame | None, objects: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give every alert an ``object_id`` and ``object_kind``; return the updated objects.

    ``object_kind``: ``known_variable`` (a catalogued variable star, or a catalogued star
    alerted before: variable by its own history, as a dipper is that no catalogue
    flags), ``star`` (a catalogued star that changed for the first time), ``transient``
    (an earlier alert's object or a new one). Deterministic for reruns and backfills:
    "before" is by observation time, whatever order the nights were processed in.
    """
    objects = objects.copy()
    ids, kinds = [], []
    in_time = alerts.sort_values("mjd")
    for row in in_time.itertuples():
        oid, kind = None, "transient"
        if refcat is not None and len(refcat):
            sep = _sep_arcsec(row.ra, row.dec, refcat.ra, refcat.dec)
            j = int(np.argmin(sep))
            if sep[j] < MATCH_RADIUS_ARCSEC:
                oid = str(refcat.source_id.iloc[j])
                kind = "known_variable" if bool(refcat.variable.iloc[j]) else "star"
                known = objects.object_id == oid if len(objects) else None
                if known is not None and known.any():
                    first = objects.loc[known, "first_mjd"].astype(float).min()
                    if kind == "star" and first < row.mjd:
                        kind = "known_variable"
                        objects.loc[known, "object_kind"] = kind
                    if row.mjd < first:  # a backfilled earlier night: the history starts here
                        objects.loc[known, ["first_alert", "first_mjd"]] = [row.alert_id, row.mjd]
        if oid is None and len(objects):
            sep = _sep_arcsec(row.ra, row.dec, objects.ra, objects.dec)
            j = int(np.argmin(sep))
            if sep[j] < MATCH_RADIUS_ARCSEC:
                oid, kind = str(objects.object_id.iloc[j]), str(objects.object_kind.iloc[j])
        if oid is None:
            oid = _new_object_id(row.night, row.ra, row.dec)
        if not len(objects) or oid not in set(objects.object_id):
            new = pd.DataFrame(
                [
                    {
                        "object_id": oid,
                        "object_kind": kind,
                        "ra": row.ra,
                        "dec": row.dec,
                        "first_alert": row.alert_id,
                        "first_mjd": row.mjd,
                    }
                ]
            )
            objects = new if not len(objects) else pd.concat([objects, new], ignore_index=True)
        ids.append(oid)
        kinds.append(kind)
    return alerts.assign(
        object_id=pd.Series(ids, index=in_time.index),
        object_kind=pd.Series(kinds, index=in_time.index),
    ), objects


def _gz_fits(image: np.ndarray, name: str) -> dict:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(image.astype(np.float32)).writeto(buf)
    return {"fileName": f"{name}.fits.gz", "stampData": gzip.compress(buf.getvalue(), mtime=0)}


def _candidate_record(row: dict) -> dict[str, Any]:
    def f(v):
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)

    return {
        "jd": float(row["mjd"]) + 2400000.5,
        "candid": row["alert_id"],
        "site": row["site"],
        "night": row["night"],
        "filter": row["filter"],
        "field": row.get("field"),
        "isdiffpos": "t",
        "xpos": f(row["x"]),
        "ypos": f(row["y"]),
        "ra": float(row["ra"]),
        "dec": float(row["dec"]),
        "magap": f(row["mag"]),
        "sigmagap": f(row["mag_err"]),
        "flux": f(row["flux_ap"]),
        "fluxerr": f(row["fluxerr_ap"]),
        "snr": f(row["snr"]),
        "fwhm": f(row["fwhm_px"]),
        "magzpsci": f(row["zero_point"]),
        "rb": f(row["p_real"]),
        "rb_class": row.get("rb_class"),
        "rb_model": row.get("rb_model"),
        "reference_id": row.get("reference_id"),
        "frame_id": row.get("frame_id"),
    }


def packet(row: dict, stamps: np.ndarray, previous: list[dict], scores: dict[str, float]) -> dict:
    """One alert packet (a dict matching :data:`ALERT_SCHEMA`)."""
    aid = row["alert_id"]
    return {
        "schemavsn": SCHEMA_VERSION,
        "publisher": "telescope_assets",
        "objectId": row["object_id"],
        "candid": aid,
        "object_kind": row["object_kind"],
        "candidate": _candidate_record(row),
        "prv_candidates": [_candidate_record(p) for p in previous] or None,
        "cutoutScience": _gz_fits(stamps[0], f"{aid}_science"),
        "cutoutTemplate": _gz_fits(stamps[1], f"{aid}_template"),
        "cutoutDifference": _gz_fits(stamps[2], f"{aid}_difference"),
        "scores": {k: float(v) for k, v in scores.items()},
        "model_versions": {"real_bogus": str(row["rb_model"])},
        "provisional": bool(row.get("provisional", False)),
    }


def packet_path(row: dict) -> str:
    """Where an alert's packet lives in the lake."""
    return Lake.alert(row["site"], row["night"], row["alert_id"])


def write_packet(lake: Lake, record: dict, path: str) -> bool:
    """Write a packet unless it exists (alerts are immutable); True when written now."""
    import fastavro

    if lake.exists(path):
        return False
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(ALERT_SCHEMA), [record], codec="null")
    lake.write_bytes(path, buf.getvalue())
    return True


def read_packet(data: bytes) -> dict:
    """Read one packet (ours or ZTF's) with fastavro."""
    import fastavro

    return next(iter(fastavro.reader(io.BytesIO(data))))


@dataclass(frozen=True)
class AlertThresholds:
    """What a candidate needs to become an alert (:func:`passes_threshold`)."""

    min_real_score: float = 0.5
    #: ... at a site not yet qualified by its own examples (tasks/site_models.py)
    provisional_min_real_score: float = 0.9
    min_snr: float = 5.0
    #: On a catalogued constant star: at least this fraction of its flux (0.1: 0.1 mag).
    min_star_fraction: float = 0.1


def alert_history(lake: Lake, object_ids) -> dict[str, list[dict]]:
    """Earlier alerts of these objects, at every site and night (for ``prv_candidates``)."""
    wanted = set(object_ids)
    out: dict[str, list[dict]] = {}
    if not wanted:  # new objects only: no manifest to read
        return out
    for rel in lake.list(lake.manifests_folder("alerts"), ".parquet", recursive=True):
        table = lake.read_parquet(rel)
        if not len(table) or "object_id" not in table:
            continue
        for row in table[table.object_id.isin(wanted)].to_dict("records"):
            out.setdefault(row["object_id"], []).append(row)
    return out


def _stamps(lake: Lake, site: str, night: str, fid: str) -> dict[str, np.ndarray]:
    """A frame's candidate cutouts by candidate id."""
    rel = lake.candidates(site, night, fid, "npz")
    with np.load(io.BytesIO(lake.read_bytes(rel)), allow_pickle=False) as z:
        return dict(zip(z["candidate_id"], z["cutouts"], strict=True))


def _associated(
    lake: Lake, site: Site, chosen: pd.DataFrame, objects: pd.DataFrame
) -> pd.DataFrame:
    """The chosen candidates with their objects; the lake's object table updated."""
    from telescope_assets.tasks.catalogs import load_reference

    parts = []
    for field, group in chosen.groupby("field"):
        refcat, _ = load_reference(lake, site, field)
        assoc, objects = associate(group, refcat, objects)
        parts.append(assoc)
    lake.write_parquet(lake.alert_objects(), objects)
    return pd.concat(parts, ignore_index=True).sort_values("alert_id", ignore_index=True)


def issue_alerts(
    lake: Lake, site: Site, night: str, thresholds: AlertThresholds
) -> tuple[pd.DataFrame, int]:
    """One site x night's alerts: the candidates that pass, with objects and packets.

    Ids are the candidates' (stable across reruns and backfills); a known variable or an
    already-alerted object is recognised by position. One packet per alert is written
    once, at :meth:`Lake.alert`. Writes the partition's ``alerts`` manifest.

    Returns the alerts table and how many packets this call wrote.
    """
    cands = lake.read_manifest("transient_candidates", site.name, night)
    table, n_written = pd.DataFrame(), 0
    if len(cands):
        t = thresholds
        chosen = cands[passes_threshold(cands, t.min_real_score, t.provisional_min_real_score,
                                        t.min_snr, t.min_star_fraction)].copy()  # fmt: skip
    else:
        chosen = pd.DataFrame()
    if len(chosen):
        # Only objects known before this call can have earlier alerts to look up.
        objects = lake.read_table(lake.alert_objects())
        known_before = set(objects.object_id) if len(objects) else set()
        chosen["alert_id"] = chosen.candidate_id
        table = _associated(lake, site, chosen, objects)
        history = alert_history(lake, set(table.object_id) & known_before)
        stamps: dict[str, dict] = {}
        paths = []
        for row in table.to_dict("records"):
            fid = row["frame_id"]
            if fid not in stamps:
                stamps[fid] = _stamps(lake, site.name, night, fid)
            previous = [p for p in history.get(row["object_id"], []) if p["mjd"] < row["mjd"]]
            scores = {k: row[k] for k in row if k.startswith("p_")}
            record = packet(row, stamps[fid][row["candidate_id"]], previous, scores)
            paths.append(packet_path(row))
            n_written += write_packet(lake, record, paths[-1])
        table["packet_path"] = paths
    lake.write_manifest("alerts", site.name, night, table)
    return table, n_written
