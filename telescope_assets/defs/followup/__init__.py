"""Follow-up: requests at the other sites for each new transient, and the alert sensor."""

import dagster as dg

from telescope_assets.defs.followup import assets
from telescope_assets.defs.followup.sensors import new_alerts

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]), jobs=[assets.followup_job], sensors=[new_alerts]
)
