"""Catalogs: source catalogs and frame quality."""

import dagster as dg

from telescope_assets.defs.catalogs.assets import frame_quality, source_catalogs

defs = dg.Definitions(assets=[source_catalogs, frame_quality])
