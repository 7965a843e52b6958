"""Reference catalogues from a Gaia archive export.

A field's reference catalogue (``refcat/<OBJECT>.parquet``, docs/sites.md) needs
positions at the frames' epoch and a magnitude in each of the site's bands. Gaia gives
the first everywhere on the sky, and its G, BP and RP magnitudes give the second through
colour transformations. :func:`from_gaia` turns an export of ``gaiadr3.gaia_source`` (or
DR2/EDR3: the same column names) into such a catalogue.

The transformations are polynomials in BP−RP of the DESI Legacy Imaging Surveys (DECam
g, r, i, z, fitted by R. Zhou in 2020, published with the survey's pipeline legacypipe,
BSD-3): ``band = G + Σ cₖ (BP−RP)ᵏ``, valid for −0.6 < BP−RP < 4.1. They are for DECam's
filters; SDSS-like g, r, i, z filters of other cameras differ by a few hundredths of a
magnitude, which the zero point's colour term takes up when the catalogue has g and r.
Stars without BP−RP, or outside the fit range, keep their position (astrometry) and get
no magnitude: the transformation is not extrapolated. Johnson-Cousins bands are not
provided (a catalogue with them can be installed by hand, docs/sites.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GAIA_BANDS", "GAIA_COLUMNS", "MAG_FLOOR", "from_gaia", "read_tables"]

#: ``band -> polynomial coefficients in BP−RP`` (lowest order first) giving band − G.
GAIA_BANDS: dict[str, tuple[float, ...]] = {
    "g": (
        -0.1178631039, 0.3650113495, 0.5608615360, -0.2850687702, -1.0243473939,
        1.4378375491, 0.0679401731, -1.1713172509, 0.9107811975, -0.3374324004,
        0.0683946390, -0.0073089582, 0.0003230170,
    ),
    "r": (
        0.1139078673, -0.2868955307, 0.0013196434, 0.1029151074, 0.1196710702,
        -0.3729031390, 0.1859874242, 0.1370162451, -0.1808580848, 0.0803219195,
        -0.0180218196, 0.0020584707, -0.0000953486,
    ),
    "i": (
        0.3396481660, -0.6491867119, -0.3330769819, 0.4381097294, 0.5752125977,
        -1.4746570523, 1.2979140762, -0.6371018151, 0.1948940062, -0.0382055596,
        0.0046907449, -0.0003296841, 0.0000101480,
    ),
    "z": (
        0.4811198057, -0.9990015041, 0.1403990019, 0.2150988888, -0.2917655866,
        0.1326831887, -0.0259205004, 0.0018548776,
    ),
}  # fmt: skip

#: Where the transformations hold (BP−RP).
COLOUR_RANGE = (-0.6, 4.1)

#: Error added in quadrature to each transformed magnitude (mag): the scatter of a
#: star's colour transformation about the polynomial, a few hundredths for main-sequence
#: stars.
MAG_FLOOR = 0.02

#: The export's columns: required, then used when present.
GAIA_COLUMNS = {
    "required": ("ra", "dec", "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"),
    "optional": (
        "source_id", "pmra", "pmdec", "ref_epoch", "phot_g_mean_flux_over_error",
        "phot_variable_flag",
    ),
}  # fmt: skip


def read_tables(paths) -> pd.DataFrame:
    """Gaia export files (FITS, VOTable, ECSV or CSV), concatenated, each source once."""
    from astropy.table import Table

    frames = []
    for path in paths:
        name = str(path).lower()
        if name.endswith((".csv", ".csv.gz")):
            frames.append(pd.read_csv(path))
        else:
            table = Table.read(path)
            # Bytes columns (FITS strings) become text; masked values NaN.
            frames.append(table.filled(np.nan).to_pandas() if table.masked else table.to_pandas())
    if not frames:
        raise ValueError("no Gaia export files given")
    table = pd.concat(frames, ignore_index=True)
    if "source_id" in table:
        table = table.drop_duplicates("source_id", ignore_index=True)
    return table


def from_gaia(gaia: pd.DataFrame, bands, epoch: float | None = None) -> pd.DataFrame:
    """A reference catalogue in ``bands`` from a Gaia export, positions at ``epoch``.

    Parameters
    ----------
    gaia : pandas.DataFrame
        Columns of ``GAIA_COLUMNS``: positions in degrees at ``ref_epoch`` (Julian year;
        2016.0 for DR3), proper motions in mas/yr (``pmra`` includes cos δ).
    bands : iterable of str
        Names of ``GAIA_BANDS``; the columns of the result are named this way.
    epoch : float, optional
        Julian year of the frames (2017.2 for March 2017). Without it, positions stay at
        Gaia's epoch (a few mas/yr × years: fine for most fields, not for nearby stars).

    Returns
    -------
    pandas.DataFrame
        ``source_id``, ``ra``, ``dec``, ``<band>``, ``<band>_err`` per band, ``gaia_g``,
        ``gaia_bp_rp``, ``variable``: the columns ``telescope_assets.tasks.catalogs`` reads.
    """
    bands = list(bands)
    unknown = [b for b in bands if b not in GAIA_BANDS]
    if unknown:
        raise ValueError(
            f"no Gaia transformation for bands {unknown}: known are {sorted(GAIA_BANDS)}. "
            "Install a catalogue with those bands by hand (docs/sites.md)."
        )
    missing = [c for c in GAIA_COLUMNS["required"] if c not in gaia]
    if missing:
        raise ValueError(f"the Gaia export lacks columns {missing} (docs/sites.md lists them)")
    ra = gaia["ra"].to_numpy(float)
    dec = gaia["dec"].to_numpy(float)
    if epoch is not None and "pmra" in gaia and "pmdec" in gaia:
        if "ref_epoch" not in gaia:
            raise ValueError("proper motions without ref_epoch: export ref_epoch too")
        years = epoch - gaia["ref_epoch"].to_numpy(float)
        pmra = np.nan_to_num(gaia["pmra"].to_numpy(float))  # no proper motion: none applied
        pmdec = np.nan_to_num(gaia["pmdec"].to_numpy(float))
        dec = dec + pmdec * years / 3.6e6
        ra = (ra + pmra * years / 3.6e6 / np.cos(np.radians(dec))) % 360.0
    g = gaia["phot_g_mean_mag"].to_numpy(float)
    colour = gaia["phot_bp_mean_mag"].to_numpy(float) - gaia["phot_rp_mean_mag"].to_numpy(float)
    usable = np.isfinite(g) & (colour > COLOUR_RANGE[0]) & (colour < COLOUR_RANGE[1])
    if "phot_g_mean_flux_over_error" in gaia:
        snr = gaia["phot_g_mean_flux_over_error"].to_numpy(float)
        g_err = np.where(snr > 0, 2.5 / np.log(10) / snr, np.nan)
    else:
        g_err = np.zeros(len(gaia))
    out = pd.DataFrame(
        {
            "source_id": gaia["source_id"].astype(str).to_numpy()
            if "source_id" in gaia
            else [f"gaia{i}" for i in range(len(gaia))],
            "ra": ra,
            "dec": dec,
        }
    )
    for band in bands:
        offset = np.polynomial.polynomial.polyval(np.where(usable, colour, 0.0), GAIA_BANDS[band])
        out[band] = np.where(usable, g + offset, np.nan)
        out[f"{band}_err"] = np.where(usable, np.hypot(g_err, MAG_FLOOR), np.nan)
    # Not "G": a site's filter "g" would take it for its band (band columns are matched
    # without regard to case).
    out["gaia_g"] = g
    out["gaia_bp_rp"] = colour
    flags = gaia["phot_variable_flag"] if "phot_variable_flag" in gaia else [""] * len(gaia)
    out["variable"] = [_is_variable(v) for v in flags]
    return out


def _is_variable(value) -> bool:
    """Gaia's ``phot_variable_flag``: 'VARIABLE', or a boolean where an export made one."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.strip().upper() == "VARIABLE"
