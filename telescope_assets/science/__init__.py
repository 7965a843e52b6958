"""Pure science code: numpy arrays, astropy headers and tables in, the same out.

Nothing here imports Dagster or touches storage; the assets in ``defs/`` call it.
"""
