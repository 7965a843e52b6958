"""Frames: raw frames, calibration masters and calibrated frames."""

import dagster as dg

from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames

defs = dg.Definitions(assets=[raw_frames, calibration_masters, calibrated_frames])
