"""Moving objects and follow-up requests at the other sites, and the job that makes them."""

import dagster as dg

from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.resources import DaskResource, LakeResource, MlflowResource, RegistryResource
from telescope_assets.tasks import followup as followup_tasks
from telescope_assets.tasks import moving_objects as moving_tasks
from telescope_assets.tasks import typing as typing_tasks

__all__ = ["followup_job", "followup_requests", "moving_objects", "transient_types"]

#: Columns of the requests shown in the UI.
SHOWN = ("request_id", "site", "priority", "window_start", "window_end", "filters", "exptime")


#: Columns of the tracklets shown in the UI.
SHOWN_TRACKLETS = (
    "designation", "n_detections", "n_sites", "sites", "rate_arcsec_per_hour", "pa_deg",
    "rms_arcsec", "ra", "dec",
)  # fmt: skip


@dg.asset(
    partitions_def=site_nights,
    group_name="followup",
    kinds={"parquet", "text"},
    deps=["alerts"],
)
def moving_objects(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.MaterializeResult:
    """The night's alerts of every site linked into tracklets; this site's MPC report.

    A tracklet is ≥ 3 detections from different exposures on one straight line at a
    constant rate (1–1500″/h), at one site or across sites
    (:func:`telescope_assets.science.tracklets.link`). The site's alerts of a tracklet
    are written to its ``moving_objects`` manifest with the rate and position angle, and
    its observations to ``mpc/<site>/<night>.txt`` in the MPC's 80-column format.
    """
    site_name, night = site_night(context)
    lake = lake_resource.get()
    found = moving_tasks.link_night(lake, registry_resource.get(), site_name, night)
    shown = found.tracklets
    return dg.MaterializeResult(
        metadata={
            "n_alerts_night": found.n_alerts,
            "n_tracklets_night": len(shown),
            "n_linked_here": len(found.detections),
            "mpc_report": dg.MetadataValue.path(lake.url_of(lake.mpc_report(site_name, night))),
            "tracklets": md_table(shown[[c for c in SHOWN_TRACKLETS if c in shown]]),
        }
    )


#: Columns of the typed objects shown in the UI.
SHOWN_TYPES = (
    "object_id", "type_class", "p_supernova_like", "p_nuclear", "p_variable_star", "p_flare",
    "p_moving_object", "p_unknown", "type_source", "host_sep_arcsec", "n_points",
)  # fmt: skip


@dg.asset(
    partitions_def=site_nights,
    group_name="followup",
    kinds={"parquet", "pytorch"},
    deps=["alerts", moving_objects, "transient_type_model"],
)
def transient_types(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Each alert object's class and six probabilities, from its context and light curve.

    Context measured on the lake (host galaxy in the reference's sharpest frame, catalogued
    star, tracklet) and the object's light curve at every site up to this night, scored
    by ``transient_type@champion``; a tracklet's alerts are ``moving_object`` by rule
    (:mod:`telescope_assets.tasks.typing`). Runs after the alerts, off their latency.
    """
    site_name, night = site_night(context)
    site = registry_resource.get()[site_name]
    table = dask.run(
        typing_tasks.type_night, lake_resource.get(), site, night, mlflow.tracking_uri,
        in_process_without_cluster=True,
    )  # fmt: skip
    model = str(table.type_model.iloc[0]) if len(table) else "not needed"
    if model == "none":
        context.log.warning(str(mlflow.no_champion("transient_type")))
    return dg.MaterializeResult(
        metadata={
            "n_objects": len(table),
            "classes": dg.MetadataValue.json(
                table.type_class.value_counts().to_dict() if len(table) else {}
            ),
            "type_model": model,
            "objects": md_table(table[[c for c in SHOWN_TYPES if c in table]]),
        }
    )


@dg.asset(
    partitions_def=site_nights,
    group_name="followup",
    kinds={"json"},
    deps=["alerts", "moving_objects", transient_types],
)
def followup_requests(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
) -> dg.MaterializeResult:
    """Observation requests at every other site that can see each new transient tonight.

    Known variable stars and moving objects get no follow-up (a request made before its
    alert joined a tracklet is withdrawn). Requests are written to
    ``queues/<site>/<alert_id>.json`` once (idempotent per alert and site), ranked by the
    earliest good window and the site's recent conditions; an alert planned by an earlier
    run is not planned again (:func:`telescope_assets.tasks.followup.plan_night`).
    """
    site_name, night = site_night(context)

    def on_cluster(fn, *args):
        # Planned on a worker of a standing cluster, which has its ephemerides warm (1.7 s
        # for the first alert of a process, 35 ms after); here when no cluster stands.
        return dask.run(fn, *args, in_process_without_cluster=True)

    plan = followup_tasks.plan_night(
        lake_resource.get(), registry_resource.get(), site_name, night, on_cluster
    )
    out = plan.requests
    return dg.MaterializeResult(
        metadata={
            "n_alerts_followed": plan.n_alerts_followed,
            "n_alerts_planned_now": plan.n_alerts_planned_now,
            "n_requests": len(out),
            "n_written_now": plan.n_written_now,
            "requests_by_site": dg.MetadataValue.json(
                out.site.value_counts().to_dict() if len(out) else {}
            ),
            "refused": md_table(plan.refusals),
            "requests": md_table(out[[c for c in SHOWN if c in out]]),
        }
    )


#: Launched by the ``new_alerts`` sensor for every new ``alerts`` materialization.
followup_job = dg.define_asset_job(
    "followup_job",
    selection=dg.AssetSelection.groups("followup"),
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": "600"},
    description="Follow-up requests at the other sites for the alerts of one site × night.",
)
