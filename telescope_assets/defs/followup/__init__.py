"""Follow-up: requests at the other sites for each new transient, and the alert sensor."""

import dagster as dg

from telescope_assets.defs.followup.assets import followup_job, followup_requests
from telescope_assets.defs.followup.sensors import new_alerts

defs = dg.Definitions(assets=[followup_requests], jobs=[followup_job], sensors=[new_alerts])
