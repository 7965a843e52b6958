"""Transients: reference images, difference candidates and alerts."""

import dagster as dg

from telescope_assets.defs.transients import assets

defs = dg.Definitions(assets=dg.load_assets_from_modules([assets]))
