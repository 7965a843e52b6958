"""Test champions: small networks trained here, registered as ``champion`` in any store.

Consumers are tested with these, not the models' accuracy (telescope_assets_tests/ml
does that), so versions are made champion directly, bypassing the promotion gate.
"""

from telescope_assets.resources import MlflowResource

KINDS = ("frame_quality", "anomaly", "real_bogus", "transient_type")
INPUTS = {
    "frame_quality": ("x", "scalars", "y", "flags"),
    "anomaly": ("x",),
    "real_bogus": ("x", "y"),
    "transient_type": ("x", "y"),
}


def train(real_bogus_n: int = 64, real_bogus_epochs: int = 1) -> dict:
    """``{kind: (network, example input)}``, deterministic for given arguments.

    The defaults make tiny networks in seconds. An end-to-end test that needs real alerts
    trains ``real_bogus`` on a few thousand examples (about a minute), which tells a
    bright point source from bogus ones.
    """
    from telescope_assets.ml.train import fit
    from telescope_assets.simulate.training import quality_examples, real_bogus_examples
    from telescope_assets.simulate.typing import typing_examples
    from telescope_assets.tasks.models import example_inputs, model_arrays

    data = quality_examples(64, seed=11)
    triplets = real_bogus_examples(real_bogus_n, seed=11)
    # Typing learns from feature vectors: a useful network in two seconds.
    sets = {"real_bogus": triplets, "transient_type": typing_examples(3000, seed=11)}
    epochs_of = {"real_bogus": real_bogus_epochs, "transient_type": 3}
    out = {}
    for kind in KINDS:
        arrays = model_arrays(kind, sets.get(kind, data))
        epochs = epochs_of.get(kind, 1)
        net, _ = fit(kind, {k: arrays[k] for k in INPUTS[kind]}, max_epochs=epochs)
        out[kind] = (net, example_inputs(kind, arrays))
    return out


def register(store: MlflowResource, networks: dict) -> dict[str, str]:
    """Log and register every network in ``store`` and make it champion.

    Returns the registered version of each kind.
    """
    import mlflow

    from telescope_assets.tasks.models import _log_model

    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    versions = {}
    for kind, (net, example) in networks.items():
        with mlflow.start_run(experiment_id=store.experiment_id(kind)):
            mlflow.log_metric("eval_threshold_at_fpr_1pct", 0.5)
            info = _log_model(net, kind, example)
        version = info.registered_model_version
        store.client().set_registered_model_alias(kind, "champion", version)
        versions[kind] = str(version)
    return versions
