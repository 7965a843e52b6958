"""Models: training sets, the network's models, each site's own real/bogus, retraining."""

import dagster as dg

from telescope_assets.defs.models import assets, sites

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets, sites]),
    jobs=[assets.models_job, sites.site_models_job],
    sensors=[sites.site_learning],
    schedules=[assets.weekly_retraining],
)
