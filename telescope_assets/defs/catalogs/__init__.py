"""Catalogs: source catalogs and frame quality."""

import dagster as dg

from telescope_assets.defs.catalogs import assets

defs = dg.Definitions(assets=dg.load_assets_from_modules([assets]))
