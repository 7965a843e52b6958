"""Bad versions of a good raw frame, one per quarantine reason, for tests."""

import io

import numpy as np
from astropy.io import fits


def rewrite(good: bytes, remove=(), data=None, **changes) -> bytes:
    """Return ``good`` with header keywords changed or removed, or new data."""
    with fits.open(io.BytesIO(good)) as hdul:
        header = hdul[0].header.copy()
        pixels = hdul[0].data if data is None else data
    for key in remove:
        del header[key]
    for key, value in changes.items():
        header[key.replace("_", "-") if key == "DATE_OBS" else key] = value
    for key in ("BZERO", "BSCALE", "BITPIX", "NAXIS1", "NAXIS2"):
        header.remove(key, ignore_missing=True)
    buf = io.BytesIO()
    fits.PrimaryHDU(pixels, header=header).writeto(buf)
    return buf.getvalue()


def set_card(good: bytes, keyword: str, value: str) -> bytes:
    """Overwrite one header card's value in place, bytes-level (for impossible values)."""
    raw = bytearray(good)
    for start in range(0, 2880 * 10, 80):
        if raw[start : start + 8].decode().strip() == keyword:
            card = f"{keyword:<8}= {value:>20}".ljust(80).encode()
            raw[start : start + 80] = card
            return bytes(raw)
    raise KeyError(keyword)


CASES = [
    "empty_file",
    "not_fits",
    "truncated_header",
    "truncated_data",
    "bad_dimensions",
    "absurd_naxis",
    "missing_keyword:DATE-OBS",
    "missing_keyword:EXPTIME",
    "missing_keyword:IMAGETYP",
    "unknown_site",
    "unsafe_header_value:FILTER",
    "unsafe_header_value:OBJECT",
    "all_nan",
    "all_zero",
    "unknown_imagetyp",
    "unknown_filter",
    "bad_exptime",
    "bad_date_obs",
]


def bad_frames(good: bytes, site_keyword: str = "SITEID") -> dict[str, bytes]:
    """A bad variant of a standard-dialect science frame for each expected reason."""
    with fits.open(io.BytesIO(good)) as hdul:
        shape = hdul[0].data.shape
    return {
        "empty_file": b"",
        "not_fits": b"\x89PNG\r\n\x1a\n" + b"x" * 5000,
        "truncated_header": good[:1000],
        "truncated_data": good[: len(good) - 20000],
        "bad_dimensions": rewrite(good, data=np.ones((100, 120), dtype=np.float32)),
        "absurd_naxis": set_card(good, "NAXIS1", "999999999"),
        "missing_keyword:DATE-OBS": rewrite(good, remove=["DATE-OBS"]),
        "missing_keyword:EXPTIME": rewrite(good, remove=["EXPTIME"]),
        "missing_keyword:IMAGETYP": rewrite(good, remove=["IMAGETYP"]),
        "unknown_site": rewrite(good, **{site_keyword: "Mauna Kea"}),
        "unsafe_header_value:FILTER": rewrite(good, FILTER="../r"),
        "unsafe_header_value:OBJECT": rewrite(good, OBJECT="F1/../../etc"),
        "all_nan": rewrite(good, data=np.full(shape, np.nan, dtype=np.float32)),
        "all_zero": rewrite(good, data=np.zeros(shape, dtype=np.float32)),
        "unknown_imagetyp": rewrite(good, IMAGETYP="focus"),
        "unknown_filter": rewrite(good, FILTER="Halpha"),
        "bad_exptime": rewrite(good, EXPTIME=-5.0),
        "bad_date_obs": rewrite(good, DATE_OBS="yesterday evening"),
    }
