"""Reading and validating raw frames written by the network's acquisition software.

Every site writes FITS in its own dialect (MaxIm DL's ``'Light Frame'`` and
``EXPOSURE``, sexagesimal ``OBJCTRA``, ``uint16`` with ``BZERO=32768``, ...). The site
registry says which keyword carries what; this module turns the bytes of one file into a
validated :class:`FrameInfo` or raises :class:`FrameError` with a machine-readable reason.

astropy raises many different exception types for different corruptions (``OSError``,
``TypeError``, ``ValueError``, ``VerifyError``); everything here is wrapped in
:class:`FrameError` so that callers handle exactly one error type.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import math
import re
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from telescope_assets.registry import Site, SiteRegistry
from telescope_assets.science.nights import night_of

__all__ = [
    "MAX_AXIS",
    "REASONS",
    "FrameError",
    "FrameInfo",
    "frame_id",
    "inspect_frame",
    "parse_header",
    "read_image",
]

BLOCK = 2880
CARD = 80
#: Largest axis length we accept (pixels); anything larger is a corrupt header.
MAX_AXIS = 32768
_BITPIX_BYTES = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
_UNSAFE = re.compile(r"(/|\\|\.\.|[\x00-\x1f])")

#: Every reason a frame can be quarantined for, with what an operator should do.
REASONS = {
    "empty_file": "The file has no bytes: the transfer failed; resend it from the site.",
    "not_fits": "The file does not start with a FITS header (SIMPLE = T).",
    "truncated_header": "The FITS header has no END card: the file was cut short; resend it.",
    "bad_header": "The FITS header could not be parsed; check the acquisition software.",
    "absurd_naxis": "NAXIS/NAXISn values are impossible for an image; the header is corrupt.",
    "bad_dimensions": "The image is not 2-D or its shape differs from the registry's camera.",
    "truncated_data": "The data unit is shorter than the header says: resend the file.",
    "unknown_site": "No registry site matches this frame's header or folder; add the site.",
    "site_conflict": "The header names one site but the frame arrived in another's folder.",
    "missing_keyword": "A required header keyword (see detail) is absent.",
    "unsafe_header_value": "An identifying header value contains '/', '\\\\', '..' or control "
    "characters.",
    "unknown_imagetyp": "The image-type value is not one the registry maps for this site.",
    "unknown_filter": "The filter is not one of the site's filters in the registry.",
    "bad_exptime": "The exposure time is not a finite, non-negative number.",
    "bad_date_obs": "DATE-OBS is not an ISO-8601 timestamp.",
    "bad_coordinates": "The pointing RA/DEC cannot be parsed.",
    "all_nan": "Every pixel is NaN.",
    "nan_pixels": "Some pixels are NaN or infinite: a raw camera frame never has them.",
    "all_zero": "Every pixel is zero: the readout failed.",
    "constant_data": "Every pixel has the same value: the readout failed.",
    "unreadable": "astropy could not decode the data unit (see detail).",
    "calibration_failed": "The frame could not be calibrated (see detail).",
}


class FrameError(Exception):
    """A raw frame that cannot be accepted, with a machine-readable ``reason``."""

    def __init__(self, reason: str, detail: str = "", site: str | None = None, night=None):
        if reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.site = site  # known when the site was identified before the failure
        self.night = night
        super().__init__(f"{reason}: {detail or REASONS[reason]}")

    @property
    def advice(self) -> str:
        """What an operator should do about it."""
        return REASONS[self.reason]


@dataclass(frozen=True)
class FrameInfo:
    """The validated, dialect-independent description of one raw frame."""

    frame_id: str
    site: str
    night: str
    frame_type: str
    date_obs: str
    exptime: float
    filter: str | None
    object: str | None
    ra_deg: float | None
    dec_deg: float | None
    ny: int
    nx: int
    bitpix: int
    size_bytes: int

    def to_dict(self) -> dict:
        """Plain dict (JSON- and Parquet-friendly)."""
        return asdict(self)


def frame_id(data: bytes) -> str:
    """Content hash of a file's bytes: the frame's identity (same bytes, same frame).

    Examples
    --------
    >>> frame_id(b"abc")
    'ba7816bf8f01cfea414140de'
    """
    return hashlib.sha256(data).hexdigest()[:24]


def _header_end(data: bytes) -> int:
    """Byte offset just past the END card, or raise ``truncated_header``."""
    for start in range(0, len(data) - CARD + 1, CARD):
        card = data[start : start + CARD]
        if card[:8] == b"END     " or card.rstrip() == b"END":
            return start + CARD
    raise FrameError("truncated_header", f"no END card in the first {len(data)} bytes")


def parse_header(data: bytes):
    """Parse the primary header from a file's bytes.

    Returns
    -------
    header : astropy.io.fits.Header
    data_offset : int
        Byte offset of the data unit.

    Raises
    ------
    FrameError
        ``empty_file``, ``not_fits``, ``truncated_header`` or ``bad_header``.
    """
    from astropy.io import fits

    if len(data) == 0:
        raise FrameError("empty_file", "0 bytes")
    if not data.startswith(b"SIMPLE  ="):
        raise FrameError("not_fits", f"starts with {data[:16]!r}")
    end = _header_end(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            header = fits.Header.fromstring(data[:end].decode("ascii", errors="strict"))
    except (ValueError, UnicodeDecodeError, fits.VerifyError) as exc:
        raise FrameError("bad_header", str(exc)) from exc
    return header, math.ceil(end / BLOCK) * BLOCK


def _int_card(header, key: str) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError("absurd_naxis", f"{key} = {value!r} is not an integer")
    return value


def _geometry(header, data_len: int, data_offset: int) -> tuple[int, int, int]:
    naxis = _int_card(header, "NAXIS")
    if naxis < 0 or naxis > 999:
        raise FrameError("absurd_naxis", f"NAXIS = {naxis}")
    axes = [_int_card(header, f"NAXIS{i}") for i in range(1, naxis + 1)]
    if any(a < 0 or a > MAX_AXIS for a in axes):
        raise FrameError("absurd_naxis", f"axis lengths {axes} outside 0..{MAX_AXIS}")
    if naxis != 2:
        raise FrameError("bad_dimensions", f"NAXIS = {naxis}, expected a 2-D image")
    bitpix = header.get("BITPIX")
    if bitpix not in _BITPIX_BYTES:
        raise FrameError("bad_header", f"BITPIX = {bitpix!r}")
    nx, ny = axes
    needed = nx * ny * _BITPIX_BYTES[bitpix]
    if data_len - data_offset < needed:
        raise FrameError(
            "truncated_data",
            f"data unit has {max(data_len - data_offset, 0)} of {needed} bytes",
        )
    return ny, nx, bitpix


def _text(header, site: Site, key: str, *, required: bool) -> str | None:
    keyword = site.header_map[key]
    value = header.get(keyword)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FrameError("missing_keyword", f"{keyword} ({key})")
        return None
    return str(value).strip()


def _check_safe(keyword: str, value: str | None) -> None:
    if value is not None and _UNSAFE.search(value):
        raise FrameError("unsafe_header_value", f"{keyword} = {value!r}")


def _parse_date(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise FrameError("bad_date_obs", f"DATE-OBS = {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _parse_coordinates(ra: str | None, dec: str | None) -> tuple[float | None, float | None]:
    """Parse RA/DEC given in degrees or sexagesimal (RA in hours, as ASCOM writes)."""
    if ra is None or dec is None:
        return None, None
    from astropy import units as u
    from astropy.coordinates import Angle

    try:
        if re.fullmatch(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?", ra):
            ra_deg = float(ra)
        else:
            ra_deg = Angle(ra, unit=u.hourangle).deg
        if re.fullmatch(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?", dec):
            dec_deg = float(dec)
        else:
            dec_deg = Angle(dec, unit=u.deg).deg
    except (ValueError, TypeError) as exc:
        raise FrameError("bad_coordinates", f"RA={ra!r} DEC={dec!r}: {exc}") from exc
    if not (0 <= ra_deg < 360 and -90 <= dec_deg <= 90):
        raise FrameError("bad_coordinates", f"RA={ra_deg} DEC={dec_deg} out of range")
    return float(ra_deg), float(dec_deg)


def _identify_site(header, registry: SiteRegistry, prefix_site: str | None) -> Site:
    values = {k: v for k, v in header.items() if isinstance(v, str)}
    for site in registry:
        for keyword in site.site_keywords:
            _check_safe(keyword, values.get(keyword))
    named = registry.identify(values)
    if named is not None:
        if prefix_site is not None and prefix_site in registry and prefix_site != named:
            raise FrameError(
                "site_conflict", f"header names {named!r}, folder belongs to {prefix_site!r}"
            )
        return registry[named]
    if prefix_site is not None and prefix_site in registry:
        site = registry[prefix_site]
        if site.identify_by == "prefix":
            return site
        raise FrameError(
            "unknown_site",
            f"folder {prefix_site!r} is a site whose frames must name it in "
            f"{list(site.site_keywords)}; the header does not",
        )
    shown = {k: values[k] for k in ("SITEID", "OBSERVAT", "TELESCOP") if k in values}
    raise FrameError("unknown_site", f"header {shown or 'names no site'}, folder {prefix_site!r}")


def inspect_frame(data: bytes, registry: SiteRegistry, prefix_site: str | None = None):
    """Validate one raw frame and describe it.

    Parameters
    ----------
    data : bytes
        The whole file.
    registry : SiteRegistry
        The site registry.
    prefix_site : str, optional
        The site named by the incoming folder the file arrived in, if any.

    Returns
    -------
    info : FrameInfo
    header : astropy.io.fits.Header

    Raises
    ------
    FrameError
        With a reason from :data:`REASONS`.
    """
    header, data_offset = parse_header(data)
    try:
        site = _identify_site(header, registry, prefix_site)
    except FrameError:
        _geometry(header, len(data), data_offset)  # a corrupt geometry is the root cause
        raise
    context: dict[str, str] = {}
    # Best effort, so a frame rejected below is still filed under its night; a bad date
    # is reported below with the other keyword problems.
    with contextlib.suppress(FrameError):
        context["night"] = night_of(
            _parse_date(str(header.get(site.header_map["date_obs"]))), site.timezone
        )
    try:
        geometry = _geometry(header, len(data), data_offset)
        info = _describe(data, header, site, geometry, context)
    except FrameError as exc:
        exc.site, exc.night = site.name, context.get("night")
        raise
    return info, header


def _describe(data: bytes, header, site: Site, geometry, context: dict) -> FrameInfo:
    ny, nx, bitpix = geometry
    if (ny, nx) != tuple(site.camera.shape):
        raise FrameError(
            "bad_dimensions",
            f"{ny}x{nx} but {site.name}'s camera writes {site.camera.shape[0]}x"
            f"{site.camera.shape[1]}",
        )
    imagetyp = _text(header, site, "imagetyp", required=True)
    exptime_raw = header.get(site.header_map["exptime"])
    date_raw = _text(header, site, "date_obs", required=True)
    if exptime_raw is None:
        raise FrameError("missing_keyword", f"{site.header_map['exptime']} (exptime)")
    flt = _text(header, site, "filter", required=False)
    obj = _text(header, site, "object", required=False)
    for key, value in (("imagetyp", imagetyp), ("filter", flt), ("object", obj)):
        _check_safe(site.header_map[key], value)
    kind = site.frame_type(imagetyp)
    if kind is None:
        raise FrameError(
            "unknown_imagetyp", f"{site.header_map['imagetyp']} = {imagetyp!r} at {site.name}"
        )
    try:
        exptime = float(exptime_raw)
    except (TypeError, ValueError):
        exptime = float("nan")
    if not math.isfinite(exptime) or exptime < 0 or (kind != "bias" and exptime == 0):
        raise FrameError("bad_exptime", f"{site.header_map['exptime']} = {exptime_raw!r}")
    when = _parse_date(date_raw)
    context["night"] = night_of(when, site.timezone)
    if kind in ("science", "flat"):
        if flt is None:
            raise FrameError("missing_keyword", f"{site.header_map['filter']} (filter)")
        if flt not in site.filters:
            raise FrameError("unknown_filter", f"{flt!r} not in {list(site.filters)}")
    else:
        flt = None
    ra_deg, dec_deg = _parse_coordinates(
        _text(header, site, "ra", required=False), _text(header, site, "dec", required=False)
    )
    pixels = read_image(data)
    finite = np.isfinite(pixels)
    if not finite.any():
        raise FrameError("all_nan", f"{pixels.size} pixels, none finite")
    if not finite.all():
        raise FrameError("nan_pixels", f"{int((~finite).sum())} non-finite pixels")
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo == hi:
        raise FrameError("all_zero" if lo == 0 else "constant_data", f"every pixel = {lo}")
    return FrameInfo(
        frame_id=frame_id(data),
        site=site.name,
        night=context["night"],
        frame_type=kind,
        date_obs=when.isoformat(),
        exptime=exptime,
        filter=flt,
        object=obj,
        ra_deg=ra_deg,
        dec_deg=dec_deg,
        ny=ny,
        nx=nx,
        bitpix=bitpix,
        size_bytes=len(data),
    )


def read_image(data: bytes) -> np.ndarray:
    """Decode the primary image of a FITS file's bytes as ``float32`` (BZERO applied).

    Raises
    ------
    FrameError
        ``unreadable`` for anything astropy cannot decode.
    """
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                pixels = hdul[0].data
                if pixels is None:
                    raise FrameError("bad_dimensions", "the primary HDU has no data")
                return np.asarray(pixels, dtype=np.float32)
    except FrameError:
        raise
    except (OSError, TypeError, ValueError, IndexError, fits.VerifyError) as exc:
        raise FrameError("unreadable", f"{type(exc).__name__}: {exc}") from exc
