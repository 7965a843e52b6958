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
from dataclasses import asdict, dataclass

import numpy as np

from telescope_assets.registry import Site, SiteRegistry
from telescope_assets.science.containers import (
    GZIP_MAGIC,
    MAX_AXIS,
    ContainerError,
    Hdu,
    checksum_problems,
    gunzip_capped,
    lenient_headers,
    science_hdu,
    walk_hdus,
)
from telescope_assets.science.nights import night_of

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_AXIS",
    "REASONS",
    "Container",
    "FrameError",
    "FrameInfo",
    "frame_id",
    "has_sky_wcs",
    "inspect_frame",
    "max_frame_bytes",
    "open_container",
    "parse_header",
    "pixel_id",
    "read_image",
]

#: Cap on an inflated gzip frame when the camera is not known (products already accepted).
DEFAULT_MAX_BYTES = 1 << 30
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
    "night_out_of_range": "DATE-OBS is a valid time, but its night lies outside the nights "
    "the pipeline is partitioned for: check the camera clock, or widen the partitions.",
    "bad_coordinates": "The pointing RA/DEC cannot be parsed.",
    "all_nan": "Every pixel is NaN.",
    "nan_pixels": "Some pixels are NaN or infinite: a raw camera frame never has them.",
    "all_zero": "Every pixel is zero: the readout failed.",
    "constant_data": "Every pixel has the same value: the readout failed.",
    "unreadable": "astropy could not decode the data unit (see detail).",
    "bad_checksum": "A CHECKSUM or DATASUM card disagrees with the bytes: the file was "
    "altered in transit; resend it.",
    "too_large": "The file is larger than the site's camera can write (or inflates to "
    "more): it was not read; it is kept aside in the drop zone (.rejected/).",
    "permission_denied": "The pipeline may not read the file: fix its permissions and move "
    "it back from the drop zone's .rejected/ folder.",
    "not_regular_file": "A link, folder or device in the drop zone: only plain files are "
    "read. Upload the file itself; the entry was removed, its target left untouched.",
    "internal_error": "Inspecting the file raised an unexpected error (see detail): a "
    "defect of the pipeline; report it with the kept file.",
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
    pixel_id: str = ""
    container: str = "fits"

    def to_dict(self) -> dict:
        """Plain dict (JSON- and Parquet-friendly)."""
        return asdict(self)


@dataclass(frozen=True)
class Container:
    """A frame file opened down to its headers: where the science image is, and how packed.

    ``header`` is what validation and provenance read: the primary header's cards, then
    the science unit's (which win), then the image's own ``BITPIX``/``NAXISn``, so a
    keyword written in either place is found.
    """

    fits_bytes: bytes
    hdus: list[Hdu]
    sci: Hdu
    header: object  # astropy.io.fits.Header
    packing: str  # "fits", "fits.gz", "fz" (tile-compressed) or "mef"
    truncated: str | None = None  # what a file cut short lacks


def frame_id(data: bytes) -> str:
    """Content hash of a file's bytes: the frame's identity (same bytes, same frame).

    Examples
    --------
    >>> frame_id(b"abc")
    'ba7816bf8f01cfea414140de'
    """
    return hashlib.sha256(data).hexdigest()[:24]


def pixel_id(pixels: np.ndarray) -> str:
    """Content hash of an image's pixel values: the same exposure under any header.

    A frame re-sent with an edited header, gzipped or tile-compressed (losslessly) has a
    new :func:`frame_id` but the same pixel id.

    Examples
    --------
    >>> pixel_id(np.zeros((2, 2))) == pixel_id(np.zeros((2, 2), dtype=np.uint16))
    True
    """
    canonical = np.ascontiguousarray(pixels, dtype="<f4")
    digest = hashlib.sha256(str(canonical.shape).encode())
    digest.update(canonical.tobytes())
    return digest.hexdigest()[:24]


def max_frame_bytes(shape: tuple[int, int]) -> int:
    """Largest file a camera of ``shape`` can plausibly write, on disk or inflated.

    Room for a 64-bit image (or a 32-bit image and an extension of the same size) and
    8 MiB of headers and small extensions. Anything larger is refused before it is read.

    Examples
    --------
    >>> max_frame_bytes((100, 100))
    8468608
    """
    ny, nx = shape
    return ny * nx * 8 + (8 << 20)


_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|THEAP|"
    r"T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+|CHECKSUM|DATASUM|EXTNAME|EXTVER|INHERIT|"
    r"Z(IMAGE|CMPTYPE|BITPIX|NAXIS\d*|TILE\d+|NAME\d+|VAL\d+|MASKCMP|SIMPLE|TENSION|EXTEND|"
    r"BLOCKED|PCOUNT|GCOUNT|HECKSUM|DATASUM|QUANTIZ|DITHER0|BLANK|SCALE|ZERO))$"
)


def _merged_header(hdus: list[Hdu], sci: Hdu):
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = sci.bitpix
    header["NAXIS"] = len(sci.shape)
    for i, length in enumerate(reversed(sci.shape), start=1):
        header[f"NAXIS{i}"] = length
    sources = [hdus[0]] if sci.index == 0 else [hdus[0], sci]
    with lenient_headers():
        for hdu in sources:
            for card in hdu.header.cards:
                keyword = card.keyword
                if not keyword or _STRUCTURAL.match(keyword):
                    continue
                if keyword in ("COMMENT", "HISTORY") or keyword not in header:
                    # Appending the card keeps HIERARCH cards HIERARCH, without a warning.
                    header.append(card, end=True)
                    continue
                try:
                    header[keyword] = (card.value, card.comment)  # the extension's wins
                except ValueError:  # an unparsable card repeated (ESO-LOG): keep each
                    header.append(card, end=True)
    return header


def open_container(data: bytes, max_bytes: int | None = None) -> Container:
    """Find the science image of a frame file without decoding any data unit.

    Parameters
    ----------
    data : bytes
        The file as received: plain FITS, gzip-compressed FITS, a tile-compressed
        (``.fz``) or multi-extension file.
    max_bytes : int, optional
        The most a gzip file may inflate to (default :data:`DEFAULT_MAX_BYTES`).

    Returns
    -------
    Container

    Raises
    ------
    FrameError
        ``empty_file``, ``not_fits``, ``truncated_header``, ``bad_header``,
        ``unsafe_header_value``, ``absurd_naxis``, ``bad_dimensions``,
        ``too_large`` or ``unreadable``; a file cut short is described as far as its
        headers go, its ``truncated`` saying what is missing.
    """
    try:
        packing = "fits"
        if data.startswith(GZIP_MAGIC):
            data = gunzip_capped(data, max_bytes or DEFAULT_MAX_BYTES)
            packing = "fits.gz"
        hdus, truncated = walk_hdus(data, allow_truncated=True)
        sci = science_hdu(hdus)
    except ContainerError as exc:
        raise FrameError(exc.reason, exc.detail) from exc
    if packing == "fits" and sci.index:
        packing = "fz" if sci.kind == "compressed_image" else "mef"
    return Container(data, hdus, sci, _merged_header(hdus, sci), packing, truncated)


def parse_header(data: bytes, max_bytes: int | None = None):
    """The header a frame's science image is described by (see :class:`Container`).

    Returns
    -------
    header : astropy.io.fits.Header
    container : Container

    Raises
    ------
    FrameError
        As :func:`open_container`.
    """
    container = open_container(data, max_bytes)
    return container.header, container


def _geometry(container: Container) -> tuple[int, int, int]:
    sci = container.sci
    if container.truncated:
        raise FrameError("truncated_data", container.truncated)
    if len(sci.shape) != 2:
        raise FrameError("bad_dimensions", f"NAXIS = {len(sci.shape)}, expected a 2-D image")
    ny, nx = sci.shape
    return ny, nx, int(sci.bitpix)


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


def _observed_at(header, site: Site, date_raw: str) -> dt.datetime:
    """The exposure's start: DATE-OBS, with the time from ``time_obs`` when it is a date.

    Older software (IRAF-era CCD controllers) writes ``DATE-OBS = '2013-07-13'`` and the
    time in another keyword (``UT``, ``TIME-OBS``, or ESO's ``TM-START`` in seconds since
    midnight); the registry's optional ``header_map.time_obs`` names it. Before 1999 the
    FITS standard wrote dates as ``dd/mm/yy``.
    """
    keyword = site.header_map.get("time_obs")
    old = re.fullmatch(r"\s*(\d{2})/(\d{2})/(\d{2})\s*", date_raw)
    if old:
        # The FITS standard's form before 1999 (dd/mm/yy, years 1900-1999), as MIDAS wrote.
        day, month, year = old.groups()
        date_raw = f"19{year}-{month}-{day}"
    if keyword and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", date_raw):
        time = header.get(keyword)
        if time is None or not str(time).strip():
            raise FrameError("missing_keyword", f"{keyword} (time_obs): DATE-OBS holds no time")
        if isinstance(time, int | float) and not isinstance(time, bool):
            # Seconds since midnight UTC (ESO's TM-START, UTSTART in some archives).
            if not 0 <= time < 86400:
                raise FrameError("bad_date_obs", f"{keyword} = {time}: not 0-86400 s")
            time = (dt.datetime.min + dt.timedelta(seconds=float(time))).time().isoformat()
        return _parse_date(f"{date_raw.strip()}T{str(time).strip()}")
    return _parse_date(date_raw)


def has_sky_wcs(header) -> bool:
    """Whether a header holds a celestial WCS (not just blank or linear axes)."""
    ctypes = [str(header.get(f"CTYPE{i}", "")).strip().upper() for i in (1, 2)]
    return all(c[:4] in ("RA--", "DEC-", "GLON", "GLAT", "ELON", "ELAT") for c in ctypes)


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


def inspect_frame(
    data: bytes,
    registry: SiteRegistry,
    prefix_site: str | None = None,
    max_bytes: int | None = None,
):
    """Validate one raw frame and describe it.

    Parameters
    ----------
    data : bytes
        The whole file (plain, gzip, tile-compressed or multi-extension FITS).
    registry : SiteRegistry
        The site registry.
    prefix_site : str, optional
        The site named by the incoming folder the file arrived in, if any.
    max_bytes : int, optional
        The most a compressed file may inflate to.

    Returns
    -------
    info : FrameInfo
    header : astropy.io.fits.Header

    Raises
    ------
    FrameError
        With a reason from :data:`REASONS`.
    """
    container = open_container(data, max_bytes)
    header = container.header
    try:
        site = _identify_site(header, registry, prefix_site)
    except FrameError:
        _geometry(container)  # a corrupt geometry is the root cause
        raise
    context: dict[str, str] = {}
    # Best effort, so a frame rejected below is still filed under its night; a bad date
    # is reported below with the other keyword problems.
    with contextlib.suppress(FrameError):
        context["night"] = night_of(
            _observed_at(header, site, str(header.get(site.header_map["date_obs"]))),
            site.timezone,
        )
    try:
        problems = checksum_problems(container.fits_bytes, container.hdus)
        if problems:
            raise FrameError("bad_checksum", "; ".join(problems))
        info = _describe(data, container, site, _geometry(container), context)
    except FrameError as exc:
        exc.site, exc.night = site.name, context.get("night")
        raise
    return info, header


def _describe(data: bytes, container: Container, site: Site, geometry, context: dict):
    header = container.header
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
    when = _observed_at(header, site, date_raw)
    context["night"] = night_of(when, site.timezone)
    flt = _band(site, flt) if kind in ("science", "flat") else None
    ra_deg, dec_deg = _parse_coordinates(
        _text(header, site, "ra", required=False), _text(header, site, "dec", required=False)
    )
    pixels = _usable_pixels(container)
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
        pixel_id=pixel_id(pixels),
        container=container.packing,
    )


def _band(site: Site, flt: str | None) -> str:
    """The site's canonical filter of a science or flat frame (its default if unnamed)."""
    if flt is None and site.default_filter is None:
        raise FrameError(
            "missing_keyword",
            f"{site.header_map['filter']} (filter); a site whose frames name no filter "
            "sets default_filter in its registry entry",
        )
    if flt is None:
        flt = site.default_filter
    band = site.canonical_filter(flt)
    if band is None:
        known = list(site.filters) + sorted(site.filter_aliases)
        raise FrameError(
            "unknown_filter",
            f"{flt!r} is none of {known} (case ignored); add it to the site's filters "
            "or filter_aliases",
        )
    return band


def _usable_pixels(container: Container) -> np.ndarray:
    """The decoded pixels, unless none are finite, some are not, or all are equal."""
    pixels = _decode(container)
    finite = np.isfinite(pixels)
    if not finite.any():
        raise FrameError("all_nan", f"{pixels.size} pixels, none finite")
    if not finite.all():
        raise FrameError("nan_pixels", f"{int((~finite).sum())} non-finite pixels")
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo == hi:
        raise FrameError("all_zero" if lo == 0 else "constant_data", f"every pixel = {lo}")
    return pixels


def _decode(container: Container) -> np.ndarray:
    from astropy.io import fits

    if container.truncated:
        raise FrameError("truncated_data", container.truncated)
    try:
        with (
            lenient_headers(),
            fits.open(io.BytesIO(container.fits_bytes), memmap=False) as hdul,
        ):
            pixels = hdul[container.sci.index].data
            if pixels is None:
                raise FrameError("bad_dimensions", "the science unit has no data")
            return np.asarray(pixels, dtype=np.float32)
    except FrameError:
        raise
    except (OSError, TypeError, ValueError, IndexError, KeyError, fits.VerifyError) as exc:
        raise FrameError("unreadable", f"{type(exc).__name__}: {exc}") from exc


def read_image(data: bytes) -> np.ndarray:
    """Decode the science image of a frame file as ``float32`` (BZERO applied).

    Plain, gzip, tile-compressed and multi-extension files alike (see
    :func:`open_container` for which unit is the science image).

    Raises
    ------
    FrameError
        ``unreadable`` for anything astropy cannot decode, or a container problem.
    """
    return _decode(open_container(data))
