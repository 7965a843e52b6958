"""Each site's own real/bogus champion, learned from its own nights (issue: new telescopes).

One partition per site. The asset reads every night of the site that has differences
(``transient_candidates``), builds the site's examples (its candidates as bogus, fakes
with its own PSF through its whole subtraction as real), judges the network champion
and a fine-tuned copy by the same gate on the site's held-out frames, and registers the
better one as ``real_bogus_<site>`` (alias ``champion`` when it passes). Until then the
site's alerts are provisional. The logic is in ``tasks/site_learning.py`` and
``tasks/site_models.py``.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.models.assets import real_bogus_model
from telescope_assets.defs.partitions import sites
from telescope_assets.plots import markdown_image, site_scores
from telescope_assets.resources import LakeResource, MlflowResource, RegistryResource

__all__ = [
    "SiteModelConfig",
    "learning_request",
    "site_learning",
    "site_models_job",
    "site_real_bogus_model",
]


class SiteModelConfig(dg.Config):
    """Which nights a site learns from, and how many fake passes per frame."""

    # Empty: every night of the site with differences.
    nights: list[str] = Field(default_factory=list)
    passes: int = 2
    seed: int = 0


@dg.asset(
    partitions_def=sites,
    group_name="site_models",
    kinds={"pytorch", "mlflow"},
    # Every night of the site: Dagster maps the site × night partitions onto the site's
    # partition by their shared "site" dimension.
    deps=["transient_candidates", real_bogus_model],
    check_specs=[dg.AssetCheckSpec("site_qualified", asset="site_real_bogus_model")],
)
def site_real_bogus_model(
    context: dg.AssetExecutionContext,
    config: SiteModelConfig,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """The site's own real/bogus champion (``real_bogus_<site>@champion`` in MLflow).

    Judged on the site's held-out frames at p(real) 0.5: at most 5 % of its fakes of S/N ≥ 10
    missed, at most one bogus candidate passed per 10 frames. The
    check ``site_qualified`` warns while the site has no champion (its alerts are
    provisional: held to p(real) ≥ 0.9 and marked so in the packets).
    """
    from telescope_assets.tasks import site_learning, site_models

    site_name = context.partition_key
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    nights = config.nights or lake.manifest_nights("transient_frames", site_name)
    train, evaluation, counts = site_learning.site_examples(
        lake,
        site,
        nights,
        passes=config.passes,
        seed=config.seed,
        progress=lambda fid: context.log.info(f"fakes through {fid}"),
    )
    site_learning.save_site_examples(
        lake, site_models.site_model_name(site_name), train, evaluation
    )
    network_sets = site_learning.network_examples(lake)
    tags = {"dagster_run_id": context.run.run_id, "site": site_name, "nights": ",".join(nights)}
    report = site_models.learn_site(
        site_name,
        train,
        evaluation,
        network_sets["train"],
        mlflow,
        tags,
        seed=config.seed,
        network_eval=network_sets["eval"],
    )
    scores = report.pop("scores")
    report["examples"] = counts
    lake.write_json(lake.site_model(site_name), report)
    figures = [{"model": who, **report[who]} for who in ("network", "fine_tuned") if who in report]
    plot = site_scores(scores, site_models.ALERT_THRESHOLD, f"{site_name}: held-out examples")
    champion = report["site_champion"]
    return dg.MaterializeResult(
        metadata={
            "nights": ", ".join(nights),
            "examples": dg.MetadataValue.json(counts),
            "n_train": report["n_train"],
            "n_eval": report["n_eval"],
            "figures": md_table(pd.DataFrame(figures)),
            "decision": report["reason"],
            "registered_version": str(report["registered_version"]),
            "site_champion": str(champion),
            "scores": dg.MetadataValue.md(markdown_image(plot, "p(real) on held-out examples")),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="site_qualified",
                passed=champion is not None,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"decision": report["reason"], "site_champion": str(champion)},
            )
        ],
    )


site_models_job = dg.define_asset_job(
    "site_models_job",
    selection=dg.AssetSelection.groups("site_models"),
    description="One site's own real/bogus examples, fine-tuning and gate (partition: the site).",
    tags={"dagster/max_runtime": str(3600)},
)


def learning_request(site: str, nights: list[str]) -> dg.RunRequest:
    """The run that teaches ``site`` from ``nights`` (one per site and set of nights)."""
    return dg.RunRequest(
        run_key=f"site_learning:{site}:{','.join(nights)}",
        partition_key=site,
        run_config={"ops": {"site_real_bogus_model": {"config": {"nights": nights}}}},
        tags={"telescope/site": site},
    )


@dg.sensor(
    job=site_models_job,
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="A provisional site (no real/bogus champion of its own) with enough "
    "subtracted frames learns from them; a new night asks again (run key: site and nights).",
)
def site_learning(
    context: dg.SensorEvaluationContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    mlflow: MlflowResource,
) -> dg.SensorResult:
    """One ``site_models_job`` run per provisional site whose nights changed."""
    from telescope_assets.tasks.site_learning import sites_due

    due = sites_due(lake_resource.get(), registry_resource.get().names, mlflow.tracking_uri)
    requests = [learning_request(site, nights) for site, nights in due]
    if not requests:
        return dg.SensorResult(skip_reason="no provisional site with enough new frames")
    return dg.SensorResult(run_requests=requests)
