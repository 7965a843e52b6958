"""The nightly report's new variables against the simulator's truth, on a processed lake.

After ``make demo``: every object of the variability tables is matched to the truth
(a star by its reference-catalogue id, a galaxy within 1.5″), and the script prints how
each truth kind was classed, how many of the simulator's constant stars are called
variable and how many are among the report's new variables (the target: at most 1 %),
and whether every listed period near one day or its harmonics carries ``day_alias``.
Not a test: it needs a demo.

    python bench/variables.py [LAKE TRUTH]   (defaults: data/lake data/truth)
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.science import variability
from telescope_assets.tasks import lightcurves as lc_tasks


def truth_kinds(lake: Lake, truth: Path, table: pd.DataFrame) -> pd.Series:
    """Each object's truth: the star's ``var_type``, ``galaxy``, or ``other``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    objects = pd.concat(
        [lake.read_parquet(p) for p in lake.list("lightcurves/objects", ".parquet")]
    ).set_index("object_id")
    stars = pd.read_parquet(truth / "stars.parquet").set_index("object_id")
    galaxies = pd.read_parquet(truth / "galaxies.parquet")
    here = objects.loc[table.object_id]
    star_kind = stars.var_type.reindex(here.ref_id.to_numpy()).to_numpy()
    _, sep, _ = SkyCoord(
        here.ra.to_numpy() * u.deg, here.dec.to_numpy() * u.deg
    ).match_to_catalog_sky(
        SkyCoord(galaxies.ra.to_numpy() * u.deg, galaxies.dec.to_numpy() * u.deg)
    )
    kind = np.where(pd.notna(star_kind), star_kind, np.where(sep.arcsec < 1.5, "galaxy", "other"))
    return pd.Series(kind, index=table.index, name="truth")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lake", nargs="?", default="data/lake")
    ap.add_argument("truth", nargs="?", default="data/truth")
    args = ap.parse_args(argv)
    lake, truth = Lake(args.lake), Path(args.truth)
    table = lc_tasks.read_variability(lake)
    if not len(table):
        print(f"no variability tables in {args.lake}: run `make demo` first", file=sys.stderr)
        return 1
    table = table[table.var_class != "too_few"]
    table = table.assign(truth=truth_kinds(lake, truth, table))
    print("Classes by the simulator's truth (objects with ≥ 8 epochs):")
    print(pd.crosstab(table.truth, table.var_class).to_string(), "\n")

    constant = table[table.truth == "constant"]
    listed = lc_tasks.new_variables(lake)
    listed = listed.merge(table[["object_id", "truth"]], on="object_id", how="left")
    called = constant.var_class.isin(variability.VARYING).sum()
    in_report = (listed.truth == "constant").sum()
    print(
        f"constant stars called variable: {called}/{len(constant)}"
        f" ({called / max(len(constant), 1):.2%})"
    )
    print(
        f"constant stars among the report's new variables: {in_report}/{len(constant)}"
        f" ({in_report / max(len(constant), 1):.2%}; target ≤ 1 %)"
    )
    print(f"new variables listed: {len(listed)}, by truth: {listed.truth.value_counts().to_dict()}")
    near_day = np.array([bool(variability.day_alias(p)) for p in listed.period])
    unflagged = near_day & ~listed.alias_risk.to_numpy(bool)
    print(
        f"listed periods near 1 d or its harmonics: {near_day.sum()},"
        f" without an alias flag: {unflagged.sum()}"
    )
    cols = ["object_id", "truth", "var_class", "period", "day_alias", "fap", "ensemble_z"]
    if len(listed):
        print(listed[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
