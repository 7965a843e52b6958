"""Models: training sets, the network's models, each site's own real/bogus, retraining."""

import dagster as dg

from telescope_assets.defs.models.assets import (
    anomaly_model,
    frame_quality_model,
    frame_quality_training_set,
    models_job,
    real_bogus_model,
    real_bogus_training_set,
    weekly_retraining,
)
from telescope_assets.defs.models.sites import site_learning, site_models_job, site_real_bogus_model

defs = dg.Definitions(
    assets=[
        frame_quality_training_set,
        real_bogus_training_set,
        frame_quality_model,
        real_bogus_model,
        anomaly_model,
        site_real_bogus_model,
    ],
    jobs=[models_job, site_models_job],
    sensors=[site_learning],
    schedules=[weekly_retraining],
)
