"""Follow-up requests at the other sites, and the job that makes them."""

import dagster as dg

from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.resources import DaskResource, LakeResource, RegistryResource
from telescope_assets.tasks import followup as followup_tasks

__all__ = ["followup_job", "followup_requests"]

#: Columns of the requests shown in the UI.
SHOWN = ("request_id", "site", "priority", "window_start", "window_end", "filters", "exptime")


@dg.asset(
    partitions_def=site_nights,
    group_name="followup",
    kinds={"json"},
    deps=["alerts"],
)
def followup_requests(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
) -> dg.MaterializeResult:
    """Observation requests at every other site that can see each new transient tonight.

    Known variable stars get no follow-up. Requests are written to
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
