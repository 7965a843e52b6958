"""``telescope-site refcat``: install a field's reference catalogue from a Gaia export.

::

    telescope-site refcat FIELD gaia_export.fits [more files] --bands g,r --epoch 2026.2
        [--lake ROOT] [--registry REGISTRY --site NAME]

Reads the export (``science.refcat.read_tables``), transforms G, BP, RP to the bands and
proper-motion corrects the positions to the epoch (``science.refcat.from_gaia``), and
writes the catalogue where the site finds it: ``refcat/<FIELD>.parquet`` in the lake, or
the site's ``reference_catalog`` pattern with ``--registry``/``--site`` (whose filters
then give the bands when ``--bands`` is left out). The write is atomic.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """The ``refcat`` subcommand of ``telescope-site``."""
    p = sub.add_parser("refcat", help="install a field's reference catalogue from a Gaia export")
    p.add_argument("field", help="the field, as the frames' OBJECT names it")
    p.add_argument("gaia", nargs="+", help="Gaia archive export files (FITS, VOTable, ECSV, CSV)")
    p.add_argument("--bands", help="comma-separated bands (g,r,i,z); default: the site's filters")
    p.add_argument(
        "--epoch", type=float, help="Julian year of the frames, for proper motions (2026.2)"
    )
    p.add_argument(
        "--lake",
        default=os.environ.get("TELESCOPE_LAKE_URL", "data/lake"),
        help="lake root (default: TELESCOPE_LAKE_URL, else data/lake)",
    )
    p.add_argument("--registry", help="registry file, for the site's reference_catalog pattern")
    p.add_argument("--site", help="the site whose pattern and filters to use (with --registry)")


def run(args: argparse.Namespace) -> int:
    """Write the catalogue; print what it holds. Exit status 2 on an unusable input."""
    from telescope_assets.lake import Lake
    from telescope_assets.registry import RegistryError, load_registry
    from telescope_assets.science.refcat import GAIA_BANDS, from_gaia, read_tables

    pattern = Lake.REFCAT_PATTERN
    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    if args.site:
        try:
            site = load_registry(args.registry)[args.site]
        except (RegistryError, KeyError, OSError) as exc:
            print(f"registry: {exc}", file=sys.stderr)
            return 2
        pattern = site.reference_catalog
        if bands is None:
            bands = [b for b in site.filters if b in GAIA_BANDS]
    if not bands:
        print("no bands: give --bands, or --registry and --site", file=sys.stderr)
        return 2
    try:
        table = from_gaia(read_tables(args.gaia), bands, epoch=args.epoch)
    except (ValueError, OSError) as exc:
        print(f"refcat: {exc}", file=sys.stderr)
        return 2
    endpoint = os.environ.get("TELESCOPE_S3_ENDPOINT_URL")
    lake = Lake(args.lake, {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {})
    rel = pattern.format(field=args.field)
    lake.write_parquet(rel, table)
    print(f"{len(table)} Gaia sources -> {lake.url_of(rel)}")
    for band in bands:
        mags = table[band].dropna()
        if len(mags):
            print(f"  {band}: {len(mags)} with a magnitude, {mags.min():.2f} to {mags.max():.2f}")
        else:
            print(f"  {band}: none (no BP-RP colours in range)")
    if args.epoch is None:
        print("  positions at Gaia's epoch (no --epoch): proper motions not applied")
    print(f"  {int(table.variable.sum())} flagged variable (left out of zero points)")
    return 0
