"""Asteroid observations in the Minor Planet Center's 80-column format.

One line per observation (the MPC's "Format For Optical Astrometric Observations"):

=======  ==================================================================
columns  content
=======  ==================================================================
1–5      packed minor planet number (blank: not a numbered object)
6–12     temporary designation (≤ 7 letters or digits, the same for every
         observation of one object in a report)
13–14    discovery asterisk, note 1 (blank)
15       note 2: ``C``, a CCD observation
16–32    UTC date of mid-exposure, ``YYYY MM DD.ddddd``
33–44    RA (J2000), ``HH MM SS.ss`` and a space (0.15″ steps)
45–56    Dec (J2000), ``sDD MM SS.s`` and a space
57–65    blank
66–71    magnitude and band, ``mm.m`` + space + band
72–77    blank
78–80    observatory code
=======  ==================================================================

A report opens with the MPC's header lines (``COD``, ``OBS``, ``TEL``, ``NET``, ``ACK``)
and one line per observation.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["designation", "observation_line", "report"]

_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def designation(key: str) -> str:
    """A temporary designation for ``key``: ``T`` and six base-36 digits (stable).

    >>> designation("TK-a1b2c3")
    'T320L4U'
    """
    value, digits = zlib.crc32(key.encode()), []
    for _ in range(6):
        value, rest = divmod(value, 36)
        digits.append(_BASE36[rest])
    return "T" + "".join(reversed(digits))


def _date(mjd: float) -> str:
    from astropy.time import Time

    t = Time(mjd, format="mjd", scale="utc")
    year, month, day = (int(v) for v in t.strftime("%Y %m %d").split())
    frac = mjd - np.floor(mjd)  # MJD days start at midnight UTC
    return f"{year:04d} {month:02d} {day + frac:08.5f} "


def _sexagesimal(value: float, unit_per_degree: float, sign: bool, decimals: int) -> str:
    x = abs(value) * unit_per_degree
    whole_units = int(x)
    minutes = (x - whole_units) * 60
    seconds = round((minutes - int(minutes)) * 60, decimals)
    minutes = int(minutes)
    if seconds >= 60:
        seconds, minutes = 0.0, minutes + 1
    if minutes >= 60:
        minutes, whole_units = 0, whole_units + 1
    width = 3 + decimals if decimals else 2
    head = f"{'-' if value < 0 else '+'}{whole_units:02d}" if sign else f"{whole_units:02d}"
    return f"{head} {minutes:02d} {seconds:0{width}.{decimals}f}"


def observation_line(
    desig: str, mjd: float, ra: float, dec: float, mag: float, band: str, code: str
) -> str:
    """One 80-column observation.

    >>> line = observation_line("T320L4U", 61117.25, 150.0, -2.5, 18.34, "r", "950")
    >>> line
    '     T320L4U  C2026 03 18.25000 10 00 00.00 -02 30 00.0          18.3 r      950'
    >>> len(line)
    80
    """
    ra_text = _sexagesimal(ra % 360, 1 / 15, sign=False, decimals=2) + " "
    dec_text = _sexagesimal(dec, 1.0, sign=True, decimals=1) + " "
    mag_text = f"{mag:4.1f} {band[:1]}" if np.isfinite(mag) else " " * 6
    line = f"{'':5}{desig:<7}{'':2}C{_date(mjd)}{ra_text}{dec_text}{'':9}{mag_text}{'':6}{code:>3}"
    if len(line) != 80:
        raise ValueError(f"an MPC line must be 80 columns, this one has {len(line)}: {line!r}")
    return line


def report(observations, code: str, observer: str, telescope: str) -> str:
    """A report: header lines, then one line per row of ``observations``.

    ``observations`` has ``designation``, ``mjd``, ``ra``, ``dec``, ``mag`` and ``band``
    columns, one row per observation (sorted by object, then time).
    """
    lines = [
        f"COD {code}",
        f"OBS {observer}",
        f"TEL {telescope}",
        "NET Gaia-like reference catalogue of the field",
        "ACK telescope_assets moving-object report",
    ]
    rows = observations.sort_values(["designation", "mjd"])
    for row in rows.itertuples():
        lines.append(
            observation_line(row.designation, row.mjd, row.ra, row.dec, row.mag, row.band, code)
        )
    return "\n".join(lines) + "\n"
