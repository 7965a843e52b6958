"""Training sets from the simulator's truth, and models trained, gated and registered in MLflow."""

import dagster as dg
import numpy as np

from telescope_assets.plots import markdown_image
from telescope_assets.resources import LakeResource, MlflowResource
from telescope_assets.tasks.models import load_arrays, save_arrays

__all__ = [
    "TrainingSetConfig",
    "anomaly_model",
    "frame_quality_model",
    "frame_quality_training_set",
    "models_job",
    "real_bogus_model",
    "real_bogus_training_set",
    "transient_type_model",
    "transient_type_training_set",
    "weekly_retraining",
]

#: Seeds of the fixed held-out evaluation sets: never used for training, never changed,
#: so every version is compared with the champion on exactly the same examples.
EVAL_SEEDS = {"frame_quality": 990_001, "real_bogus": 990_002, "transient_type": 990_003}


class TrainingSetConfig(dg.Config):
    """Size and seed of a generated training set."""

    n_train: int = 6000
    n_eval: int = 1500
    seed: int = 1


def _training_set(name, generate, config, lake_resource, describe) -> dg.MaterializeResult:
    lake = lake_resource.get()
    train = generate(config.n_train, config.seed)
    evaluation = generate(config.n_eval, EVAL_SEEDS[name])
    version = save_arrays(lake, lake.training(name, "train"), train)
    eval_version = save_arrays(lake, lake.training(name, "eval"), evaluation)
    return dg.MaterializeResult(
        metadata={
            "n_train": config.n_train,
            "n_eval": config.n_eval,
            "seed": config.seed,
            "train_sha256": version,
            "eval_sha256": eval_version,
            **describe(train),
        },
        data_version=dg.DataVersion(version),
    )


def _class_counts(classes):
    """A training set's metadata: how many examples of each class."""

    def describe(a):
        counts = np.bincount(a["y"], minlength=len(classes))
        return {"classes": dg.MetadataValue.json(dict(zip(classes, counts.tolist(), strict=True)))}

    return describe


@dg.asset(group_name="training", kinds={"numpy"})
def frame_quality_training_set(
    config: TrainingSetConfig, lake_resource: LakeResource
) -> dg.MaterializeResult:
    """Simulated frame thumbnails with seeing, transparency, ellipticity, class and flags."""
    from telescope_assets.simulate.training import FLAG_NAMES, QUALITY_CLASSES, quality_examples

    def describe(a):
        counts = np.bincount(a["y"], minlength=3)
        return {
            "classes": dg.MetadataValue.json(
                dict(zip(QUALITY_CLASSES, counts.tolist(), strict=True))
            ),
            "flags": dg.MetadataValue.json(
                dict(zip(FLAG_NAMES, a["flags"].sum(0).tolist(), strict=True))
            ),
            "anomalous_fraction": float(a["anomalous"].mean()),
        }

    return _training_set("frame_quality", quality_examples, config, lake_resource, describe)


@dg.asset(group_name="training", kinds={"numpy"})
def real_bogus_training_set(
    config: TrainingSetConfig, lake_resource: LakeResource
) -> dg.MaterializeResult:
    """Simulated 63×63 science/reference/difference triplets of five real/bogus classes."""
    from telescope_assets.simulate.training import RB_CLASSES, real_bogus_examples

    return _training_set(
        "real_bogus", real_bogus_examples, config, lake_resource, _class_counts(RB_CLASSES)
    )


class TypingSetConfig(TrainingSetConfig):
    """Size and seed of the typing set: feature vectors are cheap (about 3 s per 10 000)."""

    n_train: int = 20000
    n_eval: int = 6000


@dg.asset(group_name="training", kinds={"numpy"})
def transient_type_training_set(
    config: TypingSetConfig, lake_resource: LakeResource
) -> dg.MaterializeResult:
    """Simulated alert objects of six types (context and light-curve features, truth labels)."""
    from telescope_assets.simulate.typing import TYPE_CLASSES, typing_examples

    return _training_set(
        "transient_type", typing_examples, config, lake_resource, _class_counts(TYPE_CLASSES)
    )


class TrainingConfig(dg.Config):
    """Run configuration of a model's training."""

    seed: int = 0
    max_epochs: int | None = None  # None: the model kind's default


def _train(context, kind, data_name, config, lake_resource, mlflow) -> dg.MaterializeResult:
    from telescope_assets.tasks.models import train_and_register

    lake = lake_resource.get()
    train = load_arrays(lake, lake.training(data_name, "train"))
    evaluation = load_arrays(lake, lake.training(data_name, "eval"))
    upstream = context.instance.get_latest_materialization_event(
        dg.AssetKey(f"{data_name}_training_set")
    )
    tags = {
        "dagster_run_id": context.run_id,
        "training_set": f"{data_name}_training_set",
        "training_set_run_id": upstream.run_id if upstream else "unknown",
    }
    report = train_and_register(
        kind,
        train,
        evaluation,
        mlflow_resource=mlflow,
        tags=tags,
        seed=config.seed,
        max_epochs=config.max_epochs,
    )
    from telescope_assets.ml.train import MODELS

    spec = MODELS[kind]
    champion_metric = champion_value(report)
    ok = champion_metric is not None and spec.meets_target(champion_metric)
    plots = "\n\n".join(markdown_image(png, name) for name, png in report["plots"].items())
    return dg.MaterializeResult(
        metadata={
            "registered_version": report["version"],
            "promoted": report["promoted"],
            "decision": report["reason"],
            "champion_version": str(report["champion_version"]),
            f"eval_{spec.metric}": report["metrics"][spec.metric],
            "target": f"{spec.metric} {'>=' if spec.higher_is_better else '<='} {spec.target}",
            "metrics": dg.MetadataValue.json(report["metrics"]),
            "train_seconds": round(report["train_seconds"], 1),
            "mlflow_run_id": report["run_id"],
            "model_uri": f"models:/{kind}@champion",
            "evaluation_plots": dg.MetadataValue.md(plots),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="champion_meets_target",
                passed=ok,
                metadata={
                    "new_version": report["version"],
                    "new_value": report["metrics"][spec.metric],
                    "champion_version": str(report["champion_version"]),
                    "champion_value": champion_metric
                    if champion_metric is not None
                    else float("nan"),
                    "target": spec.target,
                    "decision": report["reason"],
                },
            )
        ],
    )


def champion_value(report: dict) -> float | None:
    """The evaluation metric of the champion after a training run, from its report.

    The report's ``champion_version`` was read from the registry after any promotion:
    when it is the new version, the new metric; else the previous champion's, measured on
    the same evaluation split; ``None`` without a champion. Versions compare as text (the
    registry hands out numbers or strings depending on the call).
    """
    champion = report.get("champion_version")
    if champion is None:
        return None
    if str(champion) == str(report["version"]):
        return report["metrics"][report["metric"]]
    return report.get("previous_metric")


def _model_asset(kind: str, data_name: str, description: str):
    training_set = {
        "frame_quality": frame_quality_training_set,
        "real_bogus": real_bogus_training_set,
        "transient_type": transient_type_training_set,
    }[data_name]

    @dg.asset(
        name=f"{kind}_model",
        group_name="models",
        kinds={"pytorch", "mlflow"},
        deps=[training_set],
        description=description,
        check_specs=[
            dg.AssetCheckSpec("champion_meets_target", asset=f"{kind}_model", blocking=True)
        ],
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,
        lake_resource: LakeResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        return _train(context, kind, data_name, config, lake_resource, mlflow)

    return _asset


frame_quality_model = _model_asset(
    "frame_quality",
    "frame_quality",
    "Frame-quality CNN (class and defect flags) in MLflow; alias champion is production.",
)
real_bogus_model = _model_asset(
    "real_bogus",
    "real_bogus",
    "Five-class real/bogus CNN of difference-image triplets registered in MLflow.",
)
anomaly_model = _model_asset(
    "anomaly",
    "frame_quality",
    "Convolutional autoencoder whose reconstruction error scores unusual frames, in MLflow.",
)

transient_type_model = _model_asset(
    "transient_type",
    "transient_type",
    "Six-class transient typing network (context and light curve) in MLflow; gate: macro recall.",
)

models_job = dg.define_asset_job(
    "models_job",
    selection=dg.AssetSelection.groups("training", "models"),
    description="Regenerate the training sets and retrain the four models (gated promotion).",
    # Run monitoring fails a run that outlives this (seconds); 10 min measured on 2 cores.
    tags={"dagster/max_runtime": str(3 * 3600)},
)

weekly_retraining = dg.ScheduleDefinition(
    name="weekly_retraining",
    job=models_job,
    cron_schedule="0 12 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Mondays 12:00 UTC; a retrain that does not beat the champion changes nothing.",
)
