"""Transients: reference images, difference candidates and alerts."""

import dagster as dg

from telescope_assets.defs.transients.assets import alerts, reference_images, transient_candidates

defs = dg.Definitions(assets=[reference_images, transient_candidates, alerts])
