"""How a frame's bytes are packed: plain FITS, gzip, tile-compressed (``.fz``), extensions.

Cameras and archives send the same image in several containers: a plain FITS file, the
same file gzipped (``.fits.gz``), a tile-compressed image in a binary-table extension
(``fpack``'s ``.fz``, RICE by default) or a multi-extension file whose science image is
the extension named ``SCI``. This module finds the science image of any of them
**without decoding any data unit**: it walks the headers, one after another, and computes
where each data unit starts and how long it is from the header alone. So a file whose
header claims an impossible image, a header of a hundred thousand cards or a gzip stream
that inflates without end is rejected before it can take memory.

Every problem raises :class:`ContainerError` with a reason from
:data:`telescope_assets.science.frames.REASONS`; :mod:`~telescope_assets.science.frames`
turns it into a quarantine.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOCK",
    "CARD",
    "MAX_CARDS",
    "MAX_HDUS",
    "ContainerError",
    "Hdu",
    "checksum_problems",
    "gunzip_capped",
    "ones_complement_sum",
    "science_hdu",
    "walk_hdus",
]

BLOCK = 2880
CARD = 80
#: Most cards one header may have (a camera writes a few hundred): 10 000 cards are 800 kB.
MAX_CARDS = 10_000
#: Most header-data units one frame file may have.
MAX_HDUS = 32
#: Largest axis length accepted (pixels); anything larger is a corrupt header.
MAX_AXIS = 32768
_BITPIX_BYTES = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}
GZIP_MAGIC = b"\x1f\x8b"
_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


class ContainerError(Exception):
    """The bytes are not a frame container we can read; ``reason`` says why."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Hdu:
    """One header-data unit as its header describes it (no data read).

    ``shape`` and ``bitpix`` are the image's: for a tile-compressed image they come from
    ``ZNAXISn`` and ``ZBITPIX``, not from the binary table that stores it.
    """

    index: int
    header: object  # astropy.io.fits.Header
    header_offset: int
    data_offset: int
    data_bytes: int
    kind: str  # "image", "compressed_image", "table" or "empty"
    shape: tuple[int, ...]
    bitpix: int | None

    @property
    def extname(self) -> str:
        """The ``EXTNAME`` in upper case ('' if none)."""
        value = self.header.get("EXTNAME", "")
        return value.strip().upper() if isinstance(value, str) else ""

    @property
    def end(self) -> int:
        """Offset just past the padded data unit (where the next header starts)."""
        return self.data_offset + math.ceil(self.data_bytes / BLOCK) * BLOCK


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip stream, refusing to produce more than ``max_bytes``.

    Parameters
    ----------
    data : bytes
        The gzip file.
    max_bytes : int
        The most the inflated file may hold (the camera's largest plausible frame).

    Returns
    -------
    bytes
        The inflated bytes.

    Raises
    ------
    ContainerError
        ``too_large`` as soon as the stream would pass ``max_bytes`` (a compression
        bomb costs at most ``max_bytes`` of memory), ``unreadable`` for a corrupt stream.

    Examples
    --------
    >>> import gzip
    >>> gunzip_capped(gzip.compress(b"abc"), 10)
    b'abc'
    """
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ContainerError("unreadable", f"gzip stream: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ContainerError(
            "too_large", f"the gzip stream inflates to more than {max_bytes} bytes"
        )
    if not inflater.eof:
        raise ContainerError("truncated_data", "the gzip stream ends early: resend the file")
    return out


def _header_cards(data: bytes, start: int) -> tuple[str, int]:
    """The header text starting at ``start`` and the offset just past its END card."""
    limit = min(len(data), start + MAX_CARDS * CARD)
    for pos in range(start, limit - CARD + 1, CARD):
        card = data[pos : pos + CARD]
        if card[:8] == b"END     " or card.rstrip() == b"END":
            text = data[start : pos + CARD]
            _check_characters(text)
            return text.decode("ascii"), pos + CARD
    if limit < len(data):
        raise ContainerError("bad_header", f"a header of more than {MAX_CARDS} cards")
    raise ContainerError("truncated_header", f"no END card in the {len(data) - start} bytes")


def _check_characters(text: bytes) -> None:
    """Only printable ASCII in a header (FITS 4.0 §4.1.1); say which card breaks it."""
    bad = _PRINTABLE.search(text)
    if bad is None:
        return
    card = bad.start() // CARD
    keyword = text[card * CARD : card * CARD + 8].decode("ascii", "replace").strip()
    byte = text[bad.start()]
    if byte < 0x20 or byte == 0x7F:
        what = f"card {card + 1} ({keyword}) holds control character {byte:#04x}"
        raise ContainerError("unsafe_header_value", what)
    what = f"card {card + 1} ({keyword}) holds non-ASCII byte {byte:#04x}"
    raise ContainerError("bad_header", what)


@contextlib.contextmanager
def lenient_headers():
    """Read headers as cameras write them, without a warning per card.

    Long keywords become HIERARCH cards (astropy's VerifyWarning), and cards of no
    convention astropy knows (ESO-MIDAS's ``ESO-LOG hh:mm:ss>`` log lines) are kept as
    they are: they are history, not keywords.
    """
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        warnings.filterwarnings("ignore", "The following header keyword is invalid")
        yield


def _parse_cards(text: str):
    """An astropy header with every card parsed now (astropy parses lazily and raises late)."""
    from astropy.io import fits

    try:
        with lenient_headers():
            header = fits.Header.fromstring(text)
            for card in header.cards:
                _ = card.value
    except (ValueError, TypeError, fits.VerifyError) as exc:
        raise ContainerError("bad_header", str(exc)) from exc
    return header


def _int(header, key: str, default: int | None = None) -> int:
    value = header.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContainerError("absurd_naxis", f"{key} = {value!r} is not an integer")
    return value


def _axes(header, prefix: str) -> tuple[int, ...]:
    naxis = _int(header, f"{prefix}NAXIS")
    if not 0 <= naxis <= 999:
        raise ContainerError("absurd_naxis", f"{prefix}NAXIS = {naxis}")
    axes = tuple(_int(header, f"{prefix}NAXIS{i}") for i in range(1, naxis + 1))
    if any(a < 0 or a > MAX_AXIS for a in axes):
        raise ContainerError("absurd_naxis", f"axis lengths {list(axes)} outside 0..{MAX_AXIS}")
    return axes


def _describe(index: int, header, header_offset: int, data_offset: int) -> Hdu:
    bitpix = header.get("BITPIX")
    if bitpix not in _BITPIX_BYTES:
        raise ContainerError("bad_header", f"BITPIX = {bitpix!r} in HDU {index}")
    axes = _axes(header, "")
    pcount = _int(header, "PCOUNT", 0) if index else 0
    gcount = _int(header, "GCOUNT", 1) if index else 1
    if pcount < 0 or gcount < 0:
        raise ContainerError("bad_header", f"PCOUNT={pcount} GCOUNT={gcount} in HDU {index}")
    elements = math.prod(axes) if axes else 0
    data_bytes = _BITPIX_BYTES[bitpix] * gcount * (pcount + elements)
    xtension = str(header.get("XTENSION", "")).strip().upper() if index else ""
    shape: tuple[int, ...] = tuple(reversed(axes))
    image_bitpix: int | None = bitpix
    if index and xtension == "BINTABLE" and header.get("ZIMAGE") is True:
        kind = "compressed_image"
        shape = tuple(reversed(_axes(header, "Z")))
        image_bitpix = header.get("ZBITPIX")
        if image_bitpix not in _BITPIX_BYTES:
            raise ContainerError("bad_header", f"ZBITPIX = {image_bitpix!r} in HDU {index}")
    elif index and xtension not in ("IMAGE", "IUEIMAGE"):
        kind, image_bitpix = "table", None
    else:
        kind = "image" if elements else "empty"
    return Hdu(index, header, header_offset, data_offset, data_bytes, kind, shape, image_bitpix)


def walk_hdus(
    data: bytes, max_hdus: int = MAX_HDUS, *, allow_truncated: bool = False
) -> list[Hdu] | tuple[list[Hdu], str | None]:
    """Every header-data unit of a FITS file, from the headers alone.

    Parameters
    ----------
    data : bytes
        The whole (uncompressed) file.
    max_hdus : int
        Refuse files with more units than this.
    allow_truncated : bool
        Return what the headers say of a file cut short instead of raising
        ``truncated_data`` (so that the caller can first tell whose frame it was).

    Returns
    -------
    list of Hdu
        In file order; the first is the primary HDU. With ``allow_truncated``, a pair:
        the units and what is missing (``None`` if nothing).

    Raises
    ------
    ContainerError
        ``empty_file``, ``not_fits``, ``truncated_header``, ``bad_header``,
        ``unsafe_header_value`` (a control character in a card), ``absurd_naxis`` or
        ``truncated_data`` (a data unit shorter than its header says).
    """
    if len(data) == 0:
        raise ContainerError("empty_file", "0 bytes")
    if not data.startswith(b"SIMPLE  ="):
        raise ContainerError("not_fits", f"starts with {data[:16]!r}")
    hdus: list[Hdu] = []
    offset = 0
    while offset < len(data) and len(hdus) < max_hdus:
        if hdus and not data.startswith(b"XTENSION", offset):
            break  # trailing padding or junk after the last unit, as FITS allows
        text, end = _header_cards(data, offset)
        data_offset = math.ceil(end / BLOCK) * BLOCK
        hdu = _describe(len(hdus), _parse_cards(text), offset, data_offset)
        hdus.append(hdu)
        if len(data) - data_offset < hdu.data_bytes:
            detail = (
                f"HDU {hdu.index}'s data unit has {max(len(data) - data_offset, 0)} of "
                f"{hdu.data_bytes} bytes"
            )
            if allow_truncated:
                return hdus, detail
            raise ContainerError("truncated_data", detail)
        offset = hdu.end
    if len(hdus) == max_hdus and offset < len(data) and data.startswith(b"XTENSION", offset):
        raise ContainerError("bad_header", f"more than {max_hdus} header-data units")
    return (hdus, None) if allow_truncated else hdus


def science_hdu(hdus: list[Hdu]) -> Hdu:
    """The unit that holds the science image.

    The image extension named ``SCI`` if there is one; else the primary image; else the
    first image extension (tile-compressed or not). This is the convention of LSST
    calexps, BANZAI products and HST files, and of ``fpack``, which moves the primary
    image to the first extension.

    Raises
    ------
    ContainerError
        ``bad_dimensions`` if no unit holds an image.
    """
    images = [h for h in hdus if h.kind in ("image", "compressed_image")]
    named = [h for h in images if h.extname == "SCI"]
    if named:
        return named[0]
    if images:
        return images[0]
    raise ContainerError("bad_dimensions", "no header-data unit holds an image")


def ones_complement_sum(buffer: bytes) -> int:
    """The 32-bit ones'-complement sum of a buffer (FITS ``CHECKSUM``/``DATASUM``).

    Parameters
    ----------
    buffer : bytes
        A whole number of 2880-byte blocks.

    Returns
    -------
    int
        The sum; an HDU whose ``CHECKSUM`` is right sums to ``0xFFFFFFFF`` (negative zero).

    Examples
    --------
    >>> ones_complement_sum(bytes([255, 255, 255, 255, 0, 0, 0, 1]))
    1
    """
    words = np.frombuffer(buffer[: len(buffer) // 4 * 4], dtype=">u4")
    total = int(words.sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def checksum_problems(data: bytes, hdus: list[Hdu]) -> list[str]:
    """Units whose ``DATASUM`` or ``CHECKSUM`` card disagrees with their bytes.

    Units without these cards are not checked (most cameras write none).

    Returns
    -------
    list of str
        One line per failed check; empty when every present sum is right.
    """
    problems = []
    for hdu in hdus:
        header = hdu.header
        data_unit = data[hdu.data_offset : hdu.end]
        if "DATASUM" in header:
            expected = str(header["DATASUM"]).strip()
            found = str(ones_complement_sum(data_unit)) if hdu.data_bytes else "0"
            if expected != found:
                problems.append(f"HDU {hdu.index}: DATASUM {expected} but the data sum {found}")
        if "CHECKSUM" in header:
            total = ones_complement_sum(data[hdu.header_offset : hdu.end])
            if total != 0xFFFFFFFF:
                problems.append(f"HDU {hdu.index}: CHECKSUM does not sum to -0 ({total:#010x})")
    return problems
