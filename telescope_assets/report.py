"""The nightly report: everything the network did in one night, as HTML and Markdown.

:func:`gather` reads one night from the lake (all sites); :func:`render` turns it into
sections, each with its plots, written once as a standalone HTML page (plots embedded)
and once as Markdown for the Dagster UI. An empty night renders every section with
"nothing" in it, never an error. Plain Python: no Dagster.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from telescope_assets import plots
from telescope_assets.lake import Lake
from telescope_assets.tasks import lightcurves as lc_tasks

__all__ = ["NightData", "Section", "gather", "render", "render_html", "render_markdown"]

SECTIONS = (
    "Frames and quality per site",
    "Seeing and transparency through the night",
    "Sky coverage",
    "Alerts and follow-up",
    "Transients by type",
    "Moving objects",
    "New variables",
    "Top anomalies",
    "Model versions used",
    "Quarantined files",
)


@dataclass
class NightData:
    """One night of the network, read from the lake."""

    night: str
    sites: list[str]
    quality: pd.DataFrame
    alerts: pd.DataFrame
    followup: pd.DataFrame
    moving: pd.DataFrame  # the sites' alerts of a tracklet (``moving_objects``)
    types: pd.DataFrame  # each alert object's type (``transient_types``)
    histories: pd.DataFrame  # alerts of the typed objects shown, every night (light curves)
    mpc_reports: dict[str, str]  # site -> where its MPC report is
    variables: pd.DataFrame
    fused: pd.DataFrame
    anomalies: pd.DataFrame
    anomalous_frames: pd.DataFrame
    quarantined: pd.DataFrame
    raw_counts: dict[str, int]
    packets: dict[str, dict] = field(default_factory=dict)


@dataclass
class Section:
    """A titled part of the report: text, a table and PNG plots."""

    title: str
    text: str
    table: pd.DataFrame | None = None
    images: list[tuple[str, bytes]] = field(default_factory=list)


def gather(lake: Lake, night: str, sites: list[str], max_packets: int = 6) -> NightData:
    """Read everything of ``night`` at ``sites`` from the lake."""
    from telescope_assets.tasks import alerts as alert_tasks

    quality = _with_pointing(
        lake.night_table("frame_quality", night, sites),
        lake.night_table("source_catalogs", night, sites),
    )
    alerts = lake.night_table("alerts", night, sites)
    followup = lake.night_table("followup_requests", night, sites)
    moving = lake.night_table("moving_objects", night, sites)
    types = lake.night_table("transient_types", night, sites)
    mpc_reports = {
        site: lake.url_of(lake.mpc_report(site, night))
        for site in sites
        if lake.exists(lake.mpc_report(site, night))
    }
    raw_counts = {}
    for site in sites:
        raw_counts[site] = len(lake.read_manifest("raw_frames", site, night))
    quarantined = pd.DataFrame(
        [q | {"site": site} for site in sites for q in lake.quarantined(site, night)]
    )
    new_vars = lc_tasks.new_variables(lake)
    fused = (
        lc_tasks.read_fused(lake, sorted(set(new_vars.tile.head(6))))
        if len(new_vars)
        else pd.DataFrame()
    )
    anomalies, frames = pd.DataFrame(), pd.DataFrame()
    if lake.exists(lake.anomalies(night, "objects")):
        anomalies = lake.read_parquet(lake.anomalies(night, "objects"))
    if lake.exists(lake.anomalies(night, "frames")):
        frames = lake.read_parquet(lake.anomalies(night, "frames"))
    if len(anomalies):
        extra = sorted(set(anomalies.tile.head(3)) - set(fused.tile if "tile" in fused else []))
        fused = pd.concat([fused, lc_tasks.read_fused(lake, extra)], ignore_index=True)
    packets = {}
    if len(alerts) and "packet_path" in alerts:
        for row in alerts.sort_values("p_real", ascending=False).head(max_packets).itertuples():
            if isinstance(row.packet_path, str) and lake.exists(row.packet_path):
                packets[row.alert_id] = alert_tasks.read_packet(lake.read_bytes(row.packet_path))
    return NightData(
        night=night,
        sites=sites,
        quality=quality,
        alerts=alerts,
        followup=followup,
        moving=moving,
        types=types,
        histories=_histories(lake, types),
        mpc_reports=mpc_reports,
        variables=new_vars,
        fused=fused,
        anomalies=anomalies,
        anomalous_frames=frames,
        quarantined=quarantined,
        raw_counts=raw_counts,
        packets=packets,
    )


#: Light curves shown per type.
CURVES_PER_TYPE = 3


def _histories(lake: Lake, types: pd.DataFrame) -> pd.DataFrame:
    """Every alert of the objects whose light curves the type sections show."""
    from telescope_assets.tasks.alerts import alert_history

    if not len(types):
        return pd.DataFrame()
    shown = types.groupby("type_class").head(CURVES_PER_TYPE).object_id
    rows = [r for points in alert_history(lake, set(shown)).values() for r in points]
    return pd.DataFrame(rows)


def _with_pointing(quality: pd.DataFrame, catalogs: pd.DataFrame) -> pd.DataFrame:
    """Add each frame's pointing (``ra_center``, ``dec_center``: CRVAL of its refined WCS)."""
    if not len(quality) or "wcs_header" not in catalogs:
        return quality.assign(ra_center=np.nan, dec_center=np.nan)
    from astropy.io import fits

    rows = []
    for fid, text in zip(catalogs.frame_id, catalogs.wcs_header, strict=True):
        # A frame without a WCS header (null in the manifest) has no pointing.
        header = fits.Header.fromstring(text if isinstance(text, str) else "", sep="\n")
        rows.append(
            {
                "frame_id": fid,
                "ra_center": float(header.get("CRVAL1", np.nan)),
                "dec_center": float(header.get("CRVAL2", np.nan)),
            }
        )
    return quality.merge(pd.DataFrame(rows), on="frame_id", how="left")


def _cutout_png(packet: dict) -> bytes:
    from astropy.io import fits

    images = []
    for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        cut = packet.get(key)
        data = None
        if cut:
            import gzip

            # Cutouts from other pipelines (ZTF's among them) may bend the FITS standard
            # in ways that do not matter for a picture.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                with fits.open(io.BytesIO(gzip.decompress(cut["stampData"]))) as hdul:
                    data = np.asarray(hdul[0].data, float)
        images.append(data)
    return plots.cutout_triplet(images, packet.get("objectId", ""))


def _frames_section(data: NightData) -> Section:
    """Frames and quality per site; the sites that sent nothing."""
    q = data.quality
    rows = []
    for site in data.sites:
        sq = q[q.site == site] if len(q) else q
        counts = sq.quality_class.value_counts() if len(sq) else pd.Series(dtype=int)
        n_quar = int((data.quarantined.site == site).sum()) if len(data.quarantined) else 0
        rows.append(
            {
                "site": site,
                "files_received": data.raw_counts.get(site, 0) + n_quar,
                "science_frames": len(sq),
                "good": int(counts.get("good", 0)),
                "medium": int(counts.get("medium", 0)),
                "bad": int(counts.get("bad", 0)),
                "quarantined": n_quar,
            }
        )
    per_site = pd.DataFrame(rows)
    observed = per_site[per_site.science_frames > 0].site.tolist() if len(per_site) else []
    dark = [s for s in data.sites if s not in observed]
    text = f"{len(q)} science frames from {len(observed)} site(s)" + (
        f"; no frames from {', '.join(dark)}." if dark else "."
    )
    images = [("quality per site", plots.quality_bars(per_site))] if len(q) else []
    return Section(SECTIONS[0], text, per_site, images)


def _conditions_section(data: NightData) -> Section:
    """Seeing and transparency through the night."""
    q = data.quality
    if not (len(q) and "mjd" in q):
        return Section(SECTIONS[1], "No science frames tonight.")
    medians = ", ".join(f"{s}: {g.seeing_arcsec.median():.2f}″" for s, g in q.groupby("site"))
    return Section(
        SECTIONS[1],
        f"Median seeing {medians}.",
        None,
        [("seeing and transparency", plots.conditions_plot(q))],
    )


def _coverage_section(data: NightData) -> Section:
    """The fields each site observed."""
    q = data.quality
    if not (len(q) and "object" in q):
        return Section(SECTIONS[2], "No field observed tonight.")
    fields = q.groupby(["site", "object"]).size().rename("frames").reset_index()
    return Section(
        SECTIONS[2],
        f"{q.object.nunique()} field(s) observed.",
        fields,
        [("sky coverage", plots.sky_coverage(q))],
    )


def _alerts_section(data: NightData) -> Section:
    """Alerts, their cutouts and follow-up status."""
    a = data.alerts
    if not len(a):
        return Section(SECTIONS[3], "No alerts tonight.")
    f = data.followup
    by_alert = (
        f.groupby("alert_id").site.agg(lambda s: ", ".join(sorted(set(s))))
        if (len(f) and "alert_id" in f)
        else pd.Series(dtype=str)
    )
    columns = ("alert_id", "site", "object_kind", "mag", "snr", "p_real")
    table = a[[c for c in columns if c in a]].copy()
    table["followup_sites"] = table.alert_id.map(by_alert).astype(object).fillna("")
    moving = set(data.moving.alert_id) if len(data.moving) else set()
    table["followup"] = np.where(
        table.followup_sites != "",
        "requested",
        np.where(
            table.alert_id.isin(moving),
            "moving object",
            np.where(table.object_kind == "transient", "no site can observe", "not needed"),
        ),
    )
    images = [(aid, _cutout_png(p)) for aid, p in data.packets.items()]
    kinds = a.object_kind.value_counts().to_dict()
    text = f"{len(a)} alert(s): " + ", ".join(f"{v} {k}" for k, v in kinds.items()) + "."
    return Section(SECTIONS[3], text, table, images)


def _types_section(data: NightData) -> list[Section]:
    """How many objects of each type, then a section per type present, with light curves."""
    from telescope_assets.science.typing import TYPE_CLASSES

    t = data.types
    if not len(t):
        return [Section(SECTIONS[4], "No alert object typed tonight.")]
    counts = t.type_class.value_counts()
    summary = pd.DataFrame({"type": list(TYPE_CLASSES)})
    summary["objects"] = summary.type.map(counts).fillna(0).astype(int)
    models = ", ".join(sorted(set(t.type_model.astype(str))))
    out = [Section(SECTIONS[4], f"{len(t)} object(s) typed by {models}.", summary)]
    for cls in [c for c in TYPE_CLASSES if c in counts]:
        of = t[t.type_class == cls].sort_values(f"p_{cls}", ascending=False)
        cols = ["object_id", "alert_id", f"p_{cls}", "type_source", "host_sep_arcsec", "star_mag",
                "n_points"]  # fmt: skip
        text = f"{len(of)} {cls} object(s)."
        if cls == "moving_object" and data.mpc_reports:
            text += " MPC reports: " + "; ".join(
                f"{site}: {url}" for site, url in sorted(data.mpc_reports.items())
            )
        images = []
        h = data.histories
        for oid in of.object_id.head(CURVES_PER_TYPE) if len(h) else []:
            points = h[h.object_id == oid]
            if len(points):
                images.append((oid, plots.light_curve(points, f"{cls}: {oid}")))
        out.append(Section(f"Transients: {cls}", text, of[cols].round(3), images))
    return out


def _moving_section(data: NightData) -> Section:
    """Tonight's tracklets, their tracks on the sky, and the sites' MPC reports."""
    m = data.moving
    if not len(m):
        return Section(SECTIONS[5], "No moving objects tonight.")
    table = (
        m.groupby("designation")
        .agg(
            sites=("site", lambda s: ", ".join(sorted(set(s)))),
            n_detections=("n_detections", "first"),
            rate_arcsec_per_hour=("rate_arcsec_per_hour", "first"),
            pa_deg=("pa_deg", "first"),
            mag=("mag", "median"),
        )
        .reset_index()
        .round(2)
    )
    reports = "; ".join(f"{site}: {url}" for site, url in sorted(data.mpc_reports.items()))
    text = f"{len(table)} tracklet(s) of asteroids, no follow-up asked. MPC reports: {reports}."
    return Section(SECTIONS[5], text, table, [("tracks", plots.tracklets_plot(m))])


def _variables_section(data: NightData) -> Section:
    """New variables, with phased light curves of the first six."""
    v = data.variables
    if not len(v):
        return Section(SECTIONS[6], "No new variables.")
    top = v.head(6)
    images = [
        (
            oid,
            plots.phased_light_curve(
                data.fused[data.fused.object_id == oid], float(per), f"{oid} ({cls})"
            ),
        )
        for oid, per, cls in zip(top.object_id, top.period, top.var_class, strict=True)
    ]
    cols = ["object_id", "var_class", "period", "fap", "amplitude", "n_epochs", "alias_risk"]
    cols += [c for c in ("day_alias", "ensemble_z") if c in v]
    return Section(
        SECTIONS[6],
        f"{len(v)} variable object(s) that the reference catalogue does not know.",
        v[cols].head(20),
        images,
    )


def _anomalies_section(data: NightData) -> Section:
    """The most anomalous objects (with light curves) and frames."""
    an, fr = data.anomalies, data.anomalous_frames
    if not (len(an) or len(fr)):
        return Section(SECTIONS[7], "Nothing to rank tonight.")
    images = []
    for oid in an.object_id.head(3) if len(an) else []:
        curve = data.fused[data.fused.object_id == oid]
        images.append((oid, plots.light_curve(curve, f"anomaly: {oid}")))
    table = an[[c for c in lc_tasks.ANOMALY_COLUMNS if c in an]].head(10) if len(an) else None
    text = f"{len(an)} objects ranked by the isolation forest"
    # Frames smaller than the anomaly model's input have no score: not ranked.
    scored = fr[fr.anomaly_score.notna()] if len(fr) else fr
    if len(scored):
        top = scored.head(5)
        text += "; strangest frames: " + ", ".join(
            f"{r.site}/{str(r.frame_id)[:12]} ({r.anomaly_score:.3g})" for r in top.itertuples()
        )
    return Section(SECTIONS[7], text + ".", table, images)


def _models_section(data: NightData) -> Section:
    """The model versions whose outputs the report shows."""
    q, a, an = data.quality, data.alerts, data.anomalies

    def names(table, col):
        return ", ".join(sorted({str(x) for x in table[col].dropna().unique()}))

    versions = {}
    for col, label in (("cnn_model", "frame_quality"), ("anomaly_model", "anomaly (frames)")):
        if len(q) and col in q:
            versions[label] = names(q, col)
    if len(a) and "rb_model" in a:
        versions["real_bogus"] = names(a, "rb_model")
    if len(data.types):
        versions["transient_type"] = names(data.types, "type_model")
    if len(an) and "forest" in an:
        versions["isolation forest (objects)"] = str(an.forest.iloc[0])
    if not versions:
        return Section(SECTIONS[8], "No model ran tonight.", None)
    table = pd.DataFrame({"model": list(versions), "version": list(versions.values())})
    return Section(SECTIONS[8], "Models whose outputs this report shows.", table)


def _quarantine_section(data: NightData) -> Section:
    """Files quarantined, with their reasons."""
    qu = data.quarantined
    if not len(qu):
        return Section(SECTIONS[9], "No file quarantined.")
    cols = [c for c in ("site", "filename", "reason", "frame_id") if c in qu]
    return Section(SECTIONS[9], f"{len(qu)} file(s) quarantined.", qu[cols])


#: One builder per section, in :data:`SECTIONS` order.
SECTION_BUILDERS = (
    _frames_section,
    _conditions_section,
    _coverage_section,
    _alerts_section,
    _types_section,
    _moving_section,
    _variables_section,
    _anomalies_section,
    _models_section,
    _quarantine_section,
)


def render(data: NightData) -> list[Section]:
    """The report's sections, in :data:`SECTIONS` order.

    A builder may add sections of its own after its titled one (one per transient type).
    """
    out = []
    for build in SECTION_BUILDERS:
        made = build(data)
        out += made if isinstance(made, list) else [made]
    return out


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, escape=True)


def render_html(night: str, sections: list[Section]) -> str:
    """A standalone HTML page (plots embedded as PNG data URIs)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>telescope_assets — night {html.escape(night)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px}"
        "tr:nth-child(even){background:#f3f3f3}img{max-width:100%;margin:4px}</style>",
        f"</head><body><h1>Night {html.escape(night)}</h1>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>")
        if s.table is not None and len(s.table):
            parts.append(_table_html(s.table))
        for alt, png in s.images:
            b64 = base64.b64encode(png).decode()
            parts.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(
    night: str, sections: list[Section], max_rows: int = 15, max_images: int = 1
) -> str:
    """The same report as Markdown for Dagster's metadata (plots inline).

    At most ``max_images`` plots per section: the metadata lives in the event log, and
    the HTML report has them all.
    """
    out = [f"# Night {night}"]
    for s in sections:
        out.append(f"## {s.title}\n\n{s.text}")
        if s.table is not None and len(s.table):
            out.append(s.table.head(max_rows).to_markdown(index=False, floatfmt=".4g"))
        for alt, png in s.images[:max_images]:
            out.append(plots.markdown_image(png, alt))
        if len(s.images) > max_images:
            out.append(f"_({len(s.images) - max_images} more plots in the HTML report)_")
    return "\n\n".join(out)
