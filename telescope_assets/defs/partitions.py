"""The site × night partitioning every per-night asset shares."""

import datetime as dt

import dagster as dg

from telescope_assets.registry import load_registry

__all__ = ["FIRST_NIGHT", "night_range", "site_night", "site_night_key", "site_nights", "sites"]

#: The first night the partitions cover: the earliest ``first_night`` of the registry's
#: sites (2025-01-01 when none names one); older frames are quarantined as out of range.
#: Read when the code location loads: a registry edit needs a reload of every process
#: (see docs/sites.md).
FIRST_NIGHT = load_registry().first_night

nights = dg.DailyPartitionsDefinition(start_date=FIRST_NIGHT, end_offset=1)
sites = dg.StaticPartitionsDefinition(load_registry().names)
site_nights = dg.MultiPartitionsDefinition({"site": sites, "night": nights})


def night_range() -> tuple[str, str]:
    """First and last night key that exist now (tonight included)."""
    last = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    return FIRST_NIGHT, last


def site_night(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """``(site, night)`` of the partition being materialized."""
    keys = context.partition_key.keys_by_dimension
    return keys["site"], keys["night"]


def site_night_key(site: str, night: str) -> dg.MultiPartitionKey:
    """The partition key of one site and night."""
    return dg.MultiPartitionKey({"site": site, "night": night})
