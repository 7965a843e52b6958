"""What each alert object of a site × night is: its context measured, its type predicted.

For every alert of the partition (the latest alert of each object), the context the
typing model learned from (:mod:`telescope_assets.science.typing`) is measured on the
lake:

* **host** — the extended source nearest in units of its size (FWHM / 2) within
  :data:`HOST_REACH_ARCSEC`, in the catalogue of the sharpest frame of the alert's
  reference (the sky before the transient; a transient in the science frame's own
  catalogue would blend with its host). Extended: a FWHM at least
  :data:`EXTENDED_FWHM_RATIO` times the frame's, and not matched to the reference
  catalogue (a bright star measures wider than the frame's FWHM).
* **star** — a catalogued star within 1.5″ (``STAR_MATCH_ARCSEC``) in the site's
  reference catalogue; ``catalogued_variable`` when the catalogue says so or the object
  was alerted before as a star (``object_kind`` ``known_variable``).
* **motion** — a tracklet of the night (``moving_objects``): its rate, and its
  detections as the light curve. Motion is exact, so a tracklet's alerts are
  ``moving_object`` by rule (``type_source`` ``rule``), whatever the model says.
* **light curve** — the object's alerts in the same filter at every site and night up
  to this night's last (a backfill of an earlier night sees what was known then).

Then ``transient_type@champion`` gives the six probabilities. Written to the
``transient_types`` manifest; runs after the alerts are written (``followup_job``), so
it adds nothing to an alert's latency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import Site
from telescope_assets.science.typing import TYPE_CLASSES, Context, features
from telescope_assets.tasks.alerts import _sep_arcsec, alert_history
from telescope_assets.tasks.catalogs import load_reference
from telescope_assets.tasks.moving_objects import MOVING
from telescope_assets.tasks.transients import STAR_MATCH_ARCSEC

__all__ = [
    "EXTENDED_FWHM_RATIO",
    "HOST_REACH_ARCSEC",
    "annotation",
    "catalogued_frames",
    "contexts",
    "prediction",
    "reference_galaxies",
    "type_alerts",
    "type_night",
    "write_annotation",
]

#: How far a host may lie from its transient (arcsec).
HOST_REACH_ARCSEC = 15.0
#: A detection this much wider than the frame's stars is a galaxy.
EXTENDED_FWHM_RATIO = 1.3
#: Typed by the tracklet rule, not the model.
RULE, MODEL = "rule", "model"


def catalogued_frames(lake: Lake, site: Site) -> dict[str, dict]:
    """Frame id → its ``source_catalogs`` row, every night of the site (read once a run)."""
    out = {}
    for rel in lake.list(lake.manifests_folder("source_catalogs", site.name), ".parquet"):
        frames = lake.read_parquet(rel)
        if len(frames):
            out |= {r["frame_id"]: r for r in frames.to_dict("records")}
    return out


def reference_galaxies(
    lake: Lake, site: Site, night: str, reference_id: str, catalogued: dict[str, dict]
) -> pd.DataFrame:
    """Extended sources (ra, dec, radius_arcsec, mag) of a reference's sharpest frame.

    ``catalogued`` is :func:`catalogued_frames`' index.
    """
    refs = lake.read_manifest("reference_images", site.name, night)
    row = refs[refs.reference_id == reference_id]
    empty = pd.DataFrame({"ra": [], "dec": [], "radius_arcsec": [], "mag": []})
    if not len(row) or not row.frames.iloc[0]:
        return empty
    hit = catalogued.get(str(row.frames.iloc[0]).split(",")[0])
    if hit is None or not isinstance(hit["catalog_path"], str):
        return empty
    cat = lake.read_parquet(hit["catalog_path"])
    wide = cat.fwhm > EXTENDED_FWHM_RATIO * float(hit["fwhm_px"])
    # A bright star's measured FWHM grows with its wings (1.4× the frame's at S/N > 100
    # on the demo): a source the reference catalogue knows is a star.
    star = cat.ref_id.fillna("").astype(str) != "" if "ref_id" in cat else False
    galaxies = cat[wide & ~star & (cat.snr > 10) & np.isfinite(cat.mag)]
    return pd.DataFrame(
        {
            "ra": galaxies.ra,
            "dec": galaxies.dec,
            "radius_arcsec": galaxies.fwhm * site.camera.pixel_scale / 2.0,
            "mag": galaxies.mag,
        }
    )


def _host(alert: pd.Series, galaxies: pd.DataFrame) -> dict:
    if not len(galaxies):
        return {}
    sep = _sep_arcsec(alert.ra, alert.dec, galaxies.ra, galaxies.dec)
    near = sep < HOST_REACH_ARCSEC
    if not near.any():
        return {}
    norm = np.where(near, sep / np.maximum(galaxies.radius_arcsec, 0.5), np.inf)
    j = int(np.argmin(norm))
    return {
        "host_sep_arcsec": float(sep[j]),
        "host_radius_arcsec": float(galaxies.radius_arcsec.iloc[j]),
        "host_mag": float(galaxies.mag.iloc[j]),
    }


def _star(alert: pd.Series, refcat: pd.DataFrame | None) -> dict:
    known = alert.get("object_kind") == "known_variable"
    band = alert["filter"]
    if refcat is None or not len(refcat) or band not in refcat:
        return {"catalogued_variable": known}
    sep = _sep_arcsec(alert.ra, alert.dec, refcat.ra, refcat.dec)
    j = int(np.argmin(sep))
    if sep[j] >= STAR_MATCH_ARCSEC or not np.isfinite(refcat[band].iloc[j]):
        return {"catalogued_variable": known}
    variable = bool(refcat.variable.iloc[j]) if "variable" in refcat else False
    return {"star_mag": float(refcat[band].iloc[j]), "catalogued_variable": known or variable}


def _light_curve(alert: pd.Series, history: list[dict], until: float):
    rows = [r for r in history if r["filter"] == alert["filter"] and r["mjd"] <= until]
    rows = rows or [alert.to_dict()]
    return np.array([r["mjd"] for r in rows], float), np.array([r["mag"] for r in rows], float)


def contexts(
    lake: Lake, site: Site, night: str, alerts: pd.DataFrame, moving: pd.DataFrame
) -> list[Context]:
    """The typing context of each alert (rows of ``alerts``), measured on the lake."""
    catalogued = catalogued_frames(lake, site) if len(alerts) else {}
    galaxies: dict[str, pd.DataFrame] = {}
    refcats: dict[str, pd.DataFrame | None] = {}
    history = alert_history(lake, alerts.object_id.unique())
    until = float(alerts.mjd.max()) if len(alerts) else 0.0
    by_tracklet = moving.groupby("tracklet_id") if len(moving) else None
    tracklet_of = dict(zip(moving.alert_id, moving.tracklet_id, strict=True)) if len(moving) else {}
    out = []
    for _, alert in alerts.iterrows():
        if alert.field not in refcats:
            refcats[alert.field] = load_reference(lake, site, alert.field)[0]
        if alert.reference_id not in galaxies:
            galaxies[alert.reference_id] = reference_galaxies(
                lake, site, night, alert.reference_id, catalogued
            )
        ctx = _host(alert, galaxies[alert.reference_id]) | _star(alert, refcats[alert.field])
        tracklet = tracklet_of.get(alert.alert_id)
        if tracklet is not None:
            members = by_tracklet.get_group(tracklet)
            rate = float(members.rate_arcsec_per_hour.iloc[0])
            t, m = members.mjd.to_numpy(float), members.mag.to_numpy(float)
            ctx |= {"in_tracklet": True, "rate_arcsec_per_hour": rate}
        else:
            t, m = _light_curve(alert, history.get(alert.object_id, []), until)
        out.append(Context(mjd=t, mag=m, **ctx))
    return out


def type_alerts(lake: Lake, site: Site, night: str, net, model_version: str) -> pd.DataFrame:
    """Type the site × night's alert objects; write and return the ``transient_types`` manifest.

    ``net`` is the typing network (``None``: no champion; every object is then
    ``unknown`` at probability NaN unless a tracklet's rule types it).
    """
    alerts = lake.read_manifest("alerts", site.name, night)
    if len(alerts):  # the latest alert of each object stands for it
        alerts = alerts.sort_values("mjd").drop_duplicates("object_id", keep="last")
    moving = lake.read_manifest("moving_objects", site.name, night)
    ctxs = contexts(lake, site, night, alerts, moving)
    probs = _predict(net, np.stack([features(c) for c in ctxs]) if ctxs else None, len(ctxs))
    rule = np.array([c.in_tracklet for c in ctxs], bool)
    probs[rule] = np.eye(len(TYPE_CLASSES))[TYPE_CLASSES.index(MOVING)]
    best = np.nan_to_num(probs, nan=-1.0).argmax(1) if len(probs) else np.zeros(0, int)
    known = np.isfinite(probs).all(1) if len(probs) else np.zeros(0, bool)
    table = pd.DataFrame(
        {
            "alert_id": alerts.alert_id.to_numpy(),
            "object_id": alerts.object_id.to_numpy(),
            "mjd": alerts.mjd.to_numpy(float),
            "ra": alerts.ra.to_numpy(float),
            "dec": alerts.dec.to_numpy(float),
            "type_class": [
                TYPE_CLASSES[k] if ok else "unknown" for k, ok in zip(best, known, strict=True)
            ],
            **{f"p_{name}": probs[:, i].astype(np.float32) for i, name in enumerate(TYPE_CLASSES)},
            "type_source": np.where(rule, RULE, MODEL),
            "type_model": model_version,
            "host_sep_arcsec": [c.host_sep_arcsec for c in ctxs],
            "host_radius_arcsec": [c.host_radius_arcsec for c in ctxs],
            "star_mag": [c.star_mag for c in ctxs],
            "n_points": np.array([len(c.mag) for c in ctxs], np.int64),
        }
    )
    table["annotation_path"] = _annotate(lake, site.name, night, table, alerts, moving, ctxs)
    lake.write_manifest("transient_types", site.name, night, table)
    return lake.read_manifest("transient_types", site.name, night)


def _annotate(lake, site, night, table, alerts, moving, ctxs) -> list[str]:
    """Write each typed alert's annotation packet; return their paths."""
    from telescope_assets.tasks.followup import DEFAULT_LIMITING_MAG, recent_conditions

    limit = recent_conditions(lake, site, night)["limiting_mag"]
    limit = float(limit) if np.isfinite(limit) else DEFAULT_LIMITING_MAG
    tracklets = {r["alert_id"]: r for r in moving.to_dict("records")} if len(moving) else {}
    paths = []
    for typed, alert, ctx in zip(
        table.to_dict("records"), alerts.to_dict("records"), ctxs, strict=True
    ):
        pred = None
        if not ctx.in_tracklet and len(ctx.mag) > 1:
            err = float(alert.get("mag_err", 0.05))
            pred = prediction(ctx, alert["filter"], err if np.isfinite(err) else 0.05, limit)
        record = annotation(typed, alert, tracklets.get(alert["alert_id"]), pred)
        paths.append(write_annotation(lake, site, night, record))
    return paths


def _predict(net, x: np.ndarray | None, n: int) -> np.ndarray:
    if x is None or net is None:
        return np.full((n, len(TYPE_CLASSES)), np.nan)
    import torch

    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(x)), 1).numpy().astype(float)


def type_night(lake: Lake, site: Site, night: str, tracking_uri: str) -> pd.DataFrame:
    """:func:`type_alerts` with ``transient_type@champion`` (loaded once per process).

    Without a champion the objects are typed by the tracklet rule alone (``type_model``
    ``none``): follow-up must not wait for a model.
    """
    from telescope_assets.ml import model_registry

    info = model_registry.champion_info(tracking_uri, "transient_type")
    if info is None:
        return type_alerts(lake, site, night, None, "none")
    net = model_registry.load_version(tracking_uri, "transient_type", info["version"])
    return type_alerts(lake, site, night, net, f"transient_type/{info['version']}")


#: Version of :data:`ANNOTATION_SCHEMA`.
ANNOTATION_VERSION = "ta-annotation-1.0"

_PREDICTION = {
    "type": "record",
    "name": "prediction",
    "fields": [
        {"name": "band", "type": "string"},
        {"name": "rate_mag_per_day", "type": "double"},
        {"name": "rate_err", "type": "double"},
        {"name": "mag_next_night", "type": "double"},
        {"name": "mag_next_night_err", "type": "double"},
        {"name": "limiting_mag", "type": "double"},
        {"name": "fade_mjd", "type": "double"},
    ],
}

#: An alert's annotation: what typing, linking and the light-curve fit say of it, written
#: after the alert (whose packet is immutable and must not wait for them), under
#: ``annotations/<site>/<night>/<alert_id>.avro`` — the way brokers publish
#: classifications beside a survey's alert stream.
ANNOTATION_SCHEMA = {
    "type": "record",
    "name": "alert_annotation",
    "namespace": "telescope_assets",
    "fields": [
        {"name": "schemavsn", "type": "string"},
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "string"},
        {"name": "type_class", "type": "string"},
        {"name": "type_probabilities", "type": {"type": "map", "values": "double"}},
        {"name": "type_source", "type": "string"},
        {"name": "model_versions", "type": {"type": "map", "values": "string"}},
        {"name": "tracklet_id", "type": ["null", "string"], "default": None},
        {"name": "rate_arcsec_per_hour", "type": ["null", "double"], "default": None},
        {"name": "pa_deg", "type": ["null", "double"], "default": None},
        {"name": "prediction", "type": ["null", _PREDICTION], "default": None},
    ],
}


def prediction(ctx: Context, band: str, mag_err: float, limit: float) -> dict | None:
    """Rate, next night's magnitude and fade date of a light curve spanning ≥ 2 nights."""
    from telescope_assets.science.evolution import fit_evolution

    n = len(ctx.mag)
    ev = fit_evolution(ctx.mjd, ctx.mag, np.full(n, mag_err), np.full(n, band))
    if not ev.ok:
        return None
    rate, rate_err = ev.rate(band)
    mag, err = ev.predict([ev.last_mjd + 1.0], band)
    return {
        "band": band,
        "rate_mag_per_day": float(rate),
        "rate_err": float(rate_err),
        "mag_next_night": float(mag[0]),
        "mag_next_night_err": float(err[0]),
        "limiting_mag": float(limit),
        "fade_mjd": float(ev.fade_mjd(limit, band)[0]),
    }


def annotation(typed: dict, alert: dict, moving: dict | None, pred: dict | None) -> dict:
    """One annotation record (:data:`ANNOTATION_SCHEMA`) of a typed alert."""
    probs = {c: float(typed[f"p_{c}"]) for c in TYPE_CLASSES if np.isfinite(typed[f"p_{c}"])}
    return {
        "schemavsn": ANNOTATION_VERSION,
        "objectId": str(typed["object_id"]),
        "candid": str(typed["alert_id"]),
        "type_class": str(typed["type_class"]),
        "type_probabilities": probs,
        "type_source": str(typed["type_source"]),
        "model_versions": {
            "real_bogus": str(alert.get("rb_model", "")),
            "transient_type": str(typed["type_model"]),
        },
        "tracklet_id": str(moving["tracklet_id"]) if moving else None,
        "rate_arcsec_per_hour": float(moving["rate_arcsec_per_hour"]) if moving else None,
        "pa_deg": float(moving["pa_deg"]) if moving and "pa_deg" in moving else None,
        "prediction": pred,
    }


def write_annotation(lake: Lake, site: str, night: str, record: dict) -> str:
    """Write (or replace: a later night's typing knows more) an alert's annotation."""
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(ANNOTATION_SCHEMA), [record], codec="null")
    path = lake.annotation(site, night, record["candid"])
    lake.write_bytes(path, buf.getvalue())
    return path
