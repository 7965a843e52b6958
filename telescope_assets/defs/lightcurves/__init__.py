"""Light curves, variability, anomalies and the nightly report; the job and its sensor."""

import dagster as dg

from telescope_assets.defs.lightcurves.assets import (
    anomalies,
    light_curves,
    nightly_job,
    nightly_report,
    variability,
)
from telescope_assets.defs.lightcurves.sensors import nightly_reports

defs = dg.Definitions(
    assets=[light_curves, variability, anomalies, nightly_report],
    jobs=[nightly_job],
    sensors=[nightly_reports],
)
