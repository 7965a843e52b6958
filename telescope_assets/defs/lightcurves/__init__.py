"""Light curves, variability, anomalies and the nightly report; the job and its sensor."""

import dagster as dg

from telescope_assets.defs.lightcurves import assets
from telescope_assets.defs.lightcurves.sensors import nightly_reports

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    jobs=[assets.nightly_job],
    sensors=[nightly_reports],
)
