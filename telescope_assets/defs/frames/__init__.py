"""Frames: raw frames, calibration masters and calibrated frames."""

import dagster as dg

from telescope_assets.defs.frames import assets

defs = dg.Definitions(assets=dg.load_assets_from_modules([assets]))
