"""A night's moving objects: every site's alerts linked into tracklets, MPC reports per site.

Each run links the whole night as the lake has it then (every site's ``alerts``
manifest of the night), so a site whose frames come later links with the earlier
sites' detections; it writes only its own partition: the ``moving_objects`` manifest
(its alerts that belong to a tracklet, with the tracklet's motion) and its MPC report
(:meth:`telescope_assets.lake.Lake.mpc_report`). A tracklet is named by its earliest
detection's alert id, so it keeps its name and designation when later detections join.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import SiteRegistry
from telescope_assets.science import mpc, tracklets

__all__ = ["NightTracklets", "link_night", "moving_alert_ids", "night_alerts"]

#: What an alert of a tracklet is (the alerts' ``object_kind`` says ``transient``).
MOVING = "moving_object"


@dataclass
class NightTracklets:
    """One site × night's moving objects."""

    detections: pd.DataFrame  # the site's alerts in tracklets (the manifest)
    tracklets: pd.DataFrame  # every tracklet of the night, all sites
    report: str  # the site's MPC report
    n_alerts: int  # transient alerts of the night at every site, linked or not


def night_alerts(lake: Lake, registry: SiteRegistry, night: str) -> pd.DataFrame:
    """The night's transient alerts of every site (known variables left out)."""
    tables = [lake.read_manifest("alerts", name, night) for name in registry.names]
    table = pd.concat([t for t in tables if len(t)] or [tables[0]], ignore_index=True)
    table = table[table.object_kind == "transient"]
    return table.sort_values(["mjd", "alert_id"], ignore_index=True)


def _tracklet_table(alerts: pd.DataFrame, found: list[tracklets.Tracklet]) -> pd.DataFrame:
    rows = []
    for t in found:
        members = alerts.iloc[list(t.members)]
        first = members.sort_values(["mjd", "alert_id"]).alert_id.iloc[0]
        tracklet_id = f"TK{first}"
        rows.append(
            t.as_dict()
            | {
                "tracklet_id": tracklet_id,
                "designation": mpc.designation(tracklet_id),
                "n_sites": int(members.site.nunique()),
                "sites": ",".join(sorted(members.site.unique())),
                "provisional": t.tracklet_id,
            }
        )
    return pd.DataFrame(rows)


def link_night(lake: Lake, registry: SiteRegistry, site: str, night: str) -> NightTracklets:
    """Link the night, write ``site``'s ``moving_objects`` manifest and MPC report."""
    alerts = night_alerts(lake, registry, night)
    found, labels = tracklets.link(alerts, night.replace("-", ""))
    table = _tracklet_table(alerts, found)
    linked = alerts.assign(provisional=labels)[labels != ""]
    if len(table):
        linked = linked.merge(table.drop(columns=["ra", "dec", "mjd"]), on="provisional")
    mine = linked[linked.site == site] if len(linked) else linked
    here = registry[site]
    report = mpc.report(
        pd.DataFrame(
            {
                "designation": mine.get("designation", pd.Series(dtype=str)),
                "mjd": mine.get("mjd", pd.Series(dtype=float)),
                "ra": mine.get("ra", pd.Series(dtype=float)),
                "dec": mine.get("dec", pd.Series(dtype=float)),
                "mag": mine.get("mag", pd.Series(dtype=float)),
                "band": mine.get("filter", pd.Series(dtype=str)),
            }
        ),
        code=here.mpc_code,
        observer=f"telescope_assets network, site {site}",
        telescope=here.description,
    )
    columns = [c for c in _MANIFEST_COLUMNS if c in mine]
    lake.write_manifest("moving_objects", site, night, mine[columns])
    lake.write_bytes(lake.mpc_report(site, night), report.encode())
    return NightTracklets(
        lake.read_manifest("moving_objects", site, night), table, report, len(alerts)
    )


_MANIFEST_COLUMNS = (
    "alert_id", "object_id", "frame_id", "site", "night", "mjd", "ra", "dec", "mag",
    "filter", "tracklet_id", "designation", "n_detections", "n_sites",
    "rate_arcsec_per_hour", "pa_deg", "rms_arcsec",
)  # fmt: skip


def moving_alert_ids(lake: Lake, site: str, night: str) -> dict[str, str]:
    """Alert id → tracklet designation, for the site × night's alerts of a tracklet."""
    table = lake.read_manifest("moving_objects", site, night)
    return dict(zip(table.alert_id, table.designation, strict=True))
