"""Cross-site follow-up: which other sites can observe an alert's target tonight, and how.

Every site other than the one that alerted is checked (astronomical night after the
alert, airmass < 2, Moon ≥ 30° away). Observable sites are ranked by the earliest start
of their window, then by their recent conditions (the latest frame-quality partition:
median transparency and seeing). Each gets a request in its queue,
``queues/<site>/<alert_id>.json``, written once (idempotent per alert and site), unless
the object's fitted evolution predicts it below that site's limit by then. Requests are
ordered by the object's :func:`science_priority`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import Site, SiteRegistry
from telescope_assets.science.ephemeris import observability
from telescope_assets.science.nights import night_of
from telescope_assets.tasks.alerts import alert_history
from telescope_assets.tasks.moving_objects import moving_alert_ids

__all__ = [
    "NightPlan",
    "alerts_to_follow",
    "exposure_for",
    "plan_alert",
    "plan_alerts",
    "plan_night",
    "recent_conditions",
]


def alerts_to_follow(records) -> list[tuple[int, str]]:
    """The ``alerts`` materializations that need a follow-up run.

    ``records`` are ``(storage id, partition, n_alerts)``; ``n_alerts`` is the
    materialization's metadata value (None when it has none). One without a partition,
    or with no alerts, needs none.

    >>> from types import SimpleNamespace as Value
    >>> alerts_to_follow([(7, "2026-03-18|ctio", Value(value=3)), (8, None, None),
    ...                   (9, "2026-03-18|teide", Value(value=0)), (10, "2026-03-19|ctio", None)])
    [(7, '2026-03-18|ctio'), (10, '2026-03-19|ctio')]
    """
    return [
        (storage_id, partition)
        for storage_id, partition, n_alerts in records
        if partition is not None and (n_alerts is None or int(n_alerts.value) != 0)
    ]


#: A new object is followed up from a detection that has another one at the same place
#: (its object, matched within 2″) at least this long before or after it: by then an
#: asteroid has moved on (15″/h is 5″ in 20 minutes) and a supernova has not. Its first
#: detection alone is held, as ZTF's filters ask for two detections before follow-up.
CONFIRM_DAYS = 20 / 1440


def confirmed(records: list[dict], history: dict[str, list[dict]]) -> set[str]:
    """Ids of the alerts whose object has another detection :data:`CONFIRM_DAYS` apart.

    >>> history = {"o1": [{"mjd": 1.0}, {"mjd": 1.02}], "o2": [{"mjd": 1.0}]}
    >>> sorted(confirmed([{"alert_id": "a", "object_id": "o1", "mjd": 1.02},
    ...                   {"alert_id": "b", "object_id": "o2", "mjd": 1.0}], history))
    ['a']
    """
    return {
        r["alert_id"]
        for r in records
        if any(abs(h["mjd"] - r["mjd"]) >= CONFIRM_DAYS for h in history.get(r["object_id"], []))
    }


#: A site's single-exposure limit (5σ, mag) until its frame quality says: a small
#: telescope's in a minute under a grey sky.
DEFAULT_LIMITING_MAG = 20.0


#: What following up a type is worth (``science_priority``'s class factor); an object
#: typed ``supernova_like`` is what the network is for. Types absent here are refused
#: when typed at probability ≥ :data:`POINTLESS_MIN_PROB` (see :data:`POINTLESS`).
CLASS_WEIGHT = {"supernova_like": 1.0, "unknown": 0.8, "nuclear": 0.6}
#: Follow-up is pointless for these: an asteroid has moved on, a variable star is known
#: and varies again, a flare is over before another site can look.
POINTLESS = ("moving_object", "variable_star", "flare")
POINTLESS_MIN_PROB = 0.9


def science_priority(
    mag: float, age_days: float, rate: float, rate_err: float, type_class: str | None = None
) -> float:
    """The scientific value of following an object up now, from what is known of it.

    ``brightness × youth × trend × class``: brightness ``10^(-0.2 (mag − 18))`` (the S/N
    an exposure buys: 2.5 at 16 mag, 0.4 at 20); youth ``exp(−age / 10 d)`` since its
    first detection (early data are what cannot be had later); trend 2 while it rises
    significantly (``rate < −2 σ``: before its peak), else 1; class
    :data:`CLASS_WEIGHT` of its type (1 when untyped). Higher is more valuable.

    >>> round(science_priority(18.0, 0.0, 0.0, 1.0), 3)
    1.0
    >>> round(science_priority(16.0, 10.0, 0.05, 0.01), 3)  # brighter, older, fading
    0.924
    """
    brightness = 10 ** (-0.2 * (mag - 18.0)) if np.isfinite(mag) else 0.4
    youth = np.exp(-max(age_days, 0.0) / 10.0) if np.isfinite(age_days) else 1.0
    rising = np.isfinite(rate) and np.isfinite(rate_err) and rate < -2 * rate_err
    weight = CLASS_WEIGHT.get(type_class, 1.0) if type_class else 1.0
    return float(brightness * youth * (2.0 if rising else 1.0) * weight)


def with_evolution(records: list[dict], history: dict[str, list[dict]]) -> list[dict]:
    """Each alert with its object's fitted evolution, rate and :func:`science_priority`.

    The evolution is :func:`~telescope_assets.science.evolution.fit_evolution`'s, over
    the object's detections: its alerts at every site and night (``history``, which holds
    this alert once its manifest is written). Fewer than two nights give no fit, and the
    priority then uses the alert's own magnitude and no trend.
    """
    from telescope_assets.science.evolution import fit_evolution

    out = []
    for r in records:
        points = {h["alert_id"]: h for h in history.get(r["object_id"], [])} | {r["alert_id"]: r}
        rows = sorted(points.values(), key=lambda h: h["mjd"])
        ev = fit_evolution(
            [h["mjd"] for h in rows], [h["mag"] for h in rows],
            [h.get("mag_err", np.nan) for h in rows], [h["filter"] for h in rows],
        )  # fmt: skip
        rate, rate_err = ev.rate(r["filter"]) if ev.ok else (np.nan, np.nan)
        age = float(r["mjd"] - rows[0]["mjd"])
        out.append(
            r | {
                "evolution": ev if ev.ok else None,
                "rate_mag_per_day": rate,
                "rate_err": rate_err,
                "science_priority": science_priority(
                    float(r["mag"]), age, rate, rate_err, r.get("type_class")
                ),
            }
        )  # fmt: skip
    return out


def _predicted_mag(evolution, when: dt.datetime, filters, mag: float) -> float:
    """The object's brightest predicted magnitude in ``filters`` at ``when``.

    ``mag`` itself without a fitted evolution.
    """
    if evolution is None:
        return mag
    mjd = 40587.0 + when.timestamp() / 86400.0
    return float(min(evolution.magnitude([mjd], band)[0] for band in filters))


#: S/N a follow-up exposure aims for, and its limits (seconds).
TARGET_SNR, MIN_EXPTIME, MAX_EXPTIME = 20.0, 30.0, 600.0


def recent_conditions(lake: Lake, site: str, night: str) -> dict[str, float]:
    """Median transparency, seeing and limit of the latest frame-quality night ≤ ``night``."""
    nights = [n for n in lake.manifest_nights("frame_quality", site) if n <= night]
    for n in sorted(nights, reverse=True):
        table = lake.read_parquet(lake.manifest("frame_quality", site, n))
        if len(table) and table.transparency.notna().any():
            limit = table.limiting_mag.astype(float) if "limiting_mag" in table else None
            return {
                "night": n,
                "transparency": float(np.nanmedian(table.transparency.astype(float))),
                "seeing_arcsec": float(np.nanmedian(table.seeing_arcsec.astype(float))),
                "limiting_mag": (
                    float(np.nanmedian(limit))
                    if limit is not None and limit.notna().any()
                    else np.nan
                ),
            }
    return {"night": None, "transparency": np.nan, "seeing_arcsec": np.nan, "limiting_mag": np.nan}


def exposure_for(site: Site, band: str, mag: float, seeing_arcsec: float) -> float:
    """Exposure (s) reaching :data:`TARGET_SNR` on a ``mag`` point source (sky-limited)."""
    zp = site.nominal_zero_point.get(band, 23.5)
    sky_mag = 20.5  # mag/arcsec², a grey sky
    seeing = seeing_arcsec if np.isfinite(seeing_arcsec) else site.median_seeing_arcsec
    scale = site.camera.pixel_scale
    npix = np.pi * (seeing / scale) ** 2  # an aperture of radius one FWHM
    source = 10 ** (-0.4 * (mag - zp))  # e-/s
    sky = 10 ** (-0.4 * (sky_mag - zp)) * scale**2 * npix  # e-/s in the aperture
    # Solve S/N = s t / sqrt(s t + b t + npix RN²) for t.
    a, b, c = source**2, -(TARGET_SNR**2) * (source + sky), -(TARGET_SNR**2) * npix * 36.0
    t = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return float(np.clip(np.ceil(t / 10) * 10, MIN_EXPTIME, MAX_EXPTIME))


def plan_alert(
    alert: dict, registry: SiteRegistry, conditions: dict[str, dict]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Requests for every other site that can observe the alert tonight, and the refusals."""
    when = dt.datetime.fromtimestamp((alert["mjd"] - 40587.0) * 86400.0, dt.UTC)
    requests, refused = [], []
    for name in registry.names:
        if name == alert["site"]:
            continue
        site = registry[name]
        night = night_of(when, site.timezone)
        vis = observability(site, night, float(alert["ra"]), float(alert["dec"]), after=when)
        if not vis.observable:
            refused.append({"site": name, "night": night, "reason": vis.reason})
            continue
        cond = conditions.get(name, {})
        seeing = cond.get("seeing_arcsec", np.nan)
        mag = float(alert["mag"]) if np.isfinite(alert["mag"]) else 19.0
        predicted = _predicted_mag(alert.get("evolution"), vis.start, site.filters, mag)
        limit = cond.get("limiting_mag", np.nan)
        limit = float(limit) if np.isfinite(limit) else DEFAULT_LIMITING_MAG
        if predicted > limit:
            refused.append(
                {"site": name, "night": night,
                 "reason": f"predicted {predicted:.1f} mag, below the site's limit {limit:.1f}"}
            )  # fmt: skip
            continue
        mag = predicted
        requests.append(
            {
                "request_id": f"{alert['alert_id']}@{name}",
                "alert_id": alert["alert_id"],
                "object_id": alert["object_id"],
                "site": name,
                "night": night,
                "ra": float(alert["ra"]),
                "dec": float(alert["dec"]),
                "filters": list(site.filters),
                "exptime": {b: exposure_for(site, b, mag, seeing) for b in site.filters},
                "expected_mag": mag,
                "window_start": vis.start.isoformat(),
                "window_end": vis.end.isoformat(),
                "min_airmass": round(vis.min_airmass, 3),
                "moon_separation_deg": round(vis.moon_separation_deg, 1),
                "recent_transparency": cond.get("transparency", np.nan),
                "recent_seeing_arcsec": seeing,
                "limiting_mag": limit,
                "science_priority": float(alert.get("science_priority", np.nan)),
                "type_class": alert.get("type_class") or "untyped",
                "rate_mag_per_day": float(alert.get("rate_mag_per_day", np.nan)),
                "rate_err": float(alert.get("rate_err", np.nan)),
                "predicted_fade_mjd": np.nan,
            }
        )
    transparency = [
        r["recent_transparency"] if np.isfinite(r["recent_transparency"]) else 0.0 for r in requests
    ]
    order = sorted(
        range(len(requests)),
        key=lambda i: (requests[i]["window_start"], -transparency[i]),
    )
    for rank, i in enumerate(order, start=1):
        requests[i]["priority"] = rank
        if alert.get("evolution") is not None:
            limit = requests[i]["limiting_mag"]
            band = requests[i]["filters"][0]
            requests[i]["predicted_fade_mjd"] = alert["evolution"].fade_mjd(limit, band)[0]
    return sorted(requests, key=lambda r: r["priority"]), refused


def plan_alerts(
    alerts: list[dict], registry: SiteRegistry, conditions: dict[str, dict]
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """:func:`plan_alert` of each alert, in order (one task for a warm dask worker).

    The first visibility computation of a process costs about 1.7 s (astropy's coordinate
    frames and ephemerides), the next ones 35 ms: a worker that has planned before plans
    a new alert at once, where a fresh run process would pay the 1.7 s every time.
    """
    return [plan_alert(alert, registry, conditions) for alert in alerts]


def as_table(requests: list[dict]) -> pd.DataFrame:
    """Requests as a flat table (filters and exposures as text)."""
    if not requests:
        return pd.DataFrame(columns=["request_id", "alert_id", "site", "priority"])
    df = pd.DataFrame(requests)
    df["filters"] = df.filters.map(",".join)
    df["exptime"] = df.exptime.map(lambda d: ",".join(f"{k}:{v:g}" for k, v in d.items()))
    return df


def _concat(*tables: pd.DataFrame) -> pd.DataFrame:
    """The non-empty tables one after the other (the last table when all are empty)."""
    parts = [t for t in tables if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else tables[-1]


def _by_priority(table: pd.DataFrame) -> pd.DataFrame:
    """Requests by scientific priority (highest first), then each alert's site rank."""
    if not len(table) or "science_priority" not in table:
        return table
    return table.sort_values(
        ["science_priority", "alert_id", "priority"],
        ascending=[False, True, True],
        na_position="last",
        ignore_index=True,
    )


@dataclass
class NightPlan:
    """What :func:`plan_night` did for one site x night."""

    requests: pd.DataFrame  # every request of the partition, earlier runs' included
    refusals: pd.DataFrame  # every (alert, site) that got none, and why
    n_alerts_followed: int  # transient alerts of the partition
    n_alerts_planned_now: int  # of those, planned by this call (the others were before)
    n_written_now: int  # queue files written by this call


def _typed(lake: Lake, site: str, night: str, records: list[dict]):
    """Records with their object's ``type_class``, less those whose type makes it pointless.

    Types come from the partition's ``transient_types`` manifest (absent: untyped).
    """
    types = lake.read_manifest("transient_types", site, night)
    if not len(types):
        return records, []
    by_object = {row["object_id"]: row for row in types.to_dict("records")}
    kept, refusals = [], []
    for r in records:
        t = by_object.get(r["object_id"])
        cls = t["type_class"] if t else None
        p = float(t.get(f"p_{cls}", np.nan)) if t else np.nan
        if cls in POINTLESS and p >= POINTLESS_MIN_PROB:
            reason = f"typed {cls} (p = {p:.2f}): follow-up pointless"
            refusals.append(
                {"site": "all", "night": night, "alert_id": r["alert_id"], "reason": reason}
            )
        else:
            kept.append(r | {"type_class": cls})
    return kept, refusals


def _screen(
    lake: Lake, site: str, night: str, records: list[dict], earlier: pd.DataFrame
) -> tuple[list[dict], pd.DataFrame, list[dict], dict[str, list[dict]]]:
    """The alerts to plan, the earlier requests to keep, the refusals, the objects' history.

    Asteroids get no follow-up, and a request made before its alert joined a tracklet is
    withdrawn from its queue; a detection not yet :func:`confirmed` is held.
    """
    moving = moving_alert_ids(lake, site, night)
    refusals = [
        {"site": "all", "night": night, "reason": f"moving object {moving[r['alert_id']]}",
         "alert_id": r["alert_id"]}
        for r in records if r["alert_id"] in moving
    ]  # fmt: skip
    records = [r for r in records if r["alert_id"] not in moving]
    records, pointless = _typed(lake, site, night, records)
    refusals += pointless
    history = alert_history(lake, {r["object_id"] for r in records})
    sure = confirmed(records, history)
    refusals += [
        {"site": "all", "night": night, "alert_id": r["alert_id"],
         "reason": "held: no second detection at this place 20 min apart yet (asteroids move)"}
        for r in records if r["alert_id"] not in sure
    ]  # fmt: skip
    withdrawn = earlier[earlier.alert_id.isin(list(moving))] if len(earlier) else earlier
    for req in withdrawn.itertuples():
        lake.delete(lake.queue(req.site, req.alert_id))
    refusals += [
        {"site": req.site, "night": night, "alert_id": req.alert_id,
         "reason": f"withdrawn: moving object {moving[req.alert_id]}"}
        for req in withdrawn.itertuples()
    ]  # fmt: skip
    kept = earlier[~earlier.alert_id.isin(list(moving))] if len(earlier) else earlier
    return [r for r in records if r["alert_id"] in sure], kept, refusals, history


def plan_night(
    lake: Lake,
    registry: SiteRegistry,
    site: str,
    night: str,
    run: Callable[..., Any] | None = None,
) -> NightPlan:
    """Follow-up of one site x night's transient alerts at every other site.

    Known variable stars and moving objects get no follow-up (a request made before its
    alert joined a tracklet is withdrawn from the queue), nor does an object's detection
    until another one at its place is :data:`CONFIRM_DAYS` apart (:func:`confirmed`;
    held, it is not planned again: the object's later detection is). Each request is
    written to its site's queue once (idempotent per alert and site). Incremental: an
    alert planned by an earlier call (its requests or refusals are in the partition's
    manifests) is not planned again, so a run late in the night plans its own alerts,
    not the whole night's. The manifests ``followup_requests`` and ``followup_refusals``
    are rewritten whole.

    ``run(plan_alerts, records, registry, conditions)`` computes the plans: the asset
    passes its dask cluster, whose workers keep their ephemerides warm; by default here.
    """
    run = run or (lambda fn, *args: fn(*args))
    table = lake.read_manifest("alerts", site, night)
    wanted = table[table.object_kind == "transient"] if len(table) else table
    ids = set(wanted.alert_id) if len(wanted) else set()
    earlier = lake.read_manifest("followup_requests", site, night)
    earlier_refused = lake.read_manifest("followup_refusals", site, night)
    # Plans of alerts that are still alerts (a rerun with another threshold drops some).
    earlier = earlier[earlier.alert_id.isin(ids)] if len(earlier) else earlier
    if len(earlier_refused):
        earlier_refused = earlier_refused[earlier_refused.alert_id.isin(ids)]
    planned = set(earlier.get("alert_id", [])) | set(earlier_refused.get("alert_id", []))
    records = [r for r in wanted.to_dict("records") if r["alert_id"] not in planned]
    n_planned_now = len(records)
    records, earlier, refusals, history = _screen(lake, site, night, records, earlier)
    records = with_evolution(records, history)
    plans = []
    if records:  # the other sites' recent conditions are read only when they rank something
        conditions = {
            name: recent_conditions(lake, name, night) for name in registry.names if name != site
        }
        plans = run(plan_alerts, records, registry, conditions)
    requests, written = [], 0
    for alert, (reqs, refused) in zip(records, plans, strict=True):
        for req in reqs:
            path = lake.queue(req["site"], alert["alert_id"])
            if not lake.exists(path):
                lake.write_json(path, req)
                written += 1
        requests += reqs
        refusals += [r | {"alert_id": alert["alert_id"]} for r in refused]
    out = _by_priority(_concat(earlier, as_table(requests)))
    refused_all = _concat(
        earlier_refused, pd.DataFrame(refusals, columns=["site", "night", "reason", "alert_id"])
    )
    lake.write_manifest("followup_requests", site, night, out)
    lake.write_manifest("followup_refusals", site, night, refused_all)
    return NightPlan(out, refused_all, len(wanted), n_planned_now, written)
