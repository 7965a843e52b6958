"""Dagster objects only, one package per domain; each exposes its ``defs``.

The domains refer to each other by asset key (``deps=["alerts"]``) and by job name,
never by importing another domain's objects; :mod:`telescope_assets.definitions` merges
them with the resources into the code location.
"""

#: Every domain, in the order of the data flow.
DOMAINS = ("ingest", "frames", "catalogs", "transients", "followup", "lightcurves", "models")
