"""The site registry: which telescopes exist, where they are, and how their frames look.

The registry is a YAML file. The packaged default lives beside this module
(``sites.yaml``); the environment variable ``TELESCOPE_ASSETS_REGISTRY`` names another
file to use instead. Adding a telescope is one entry in that file.

This module is pure Python (no Dagster): science, simulation and ingestion all read it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from telescope_assets.lake import Lake

__all__ = [
    "DEFAULT_EXTINCTION",
    "DEFAULT_FIRST_NIGHT",
    "REGISTRY_ENV",
    "Camera",
    "RegistryError",
    "Site",
    "SiteRegistry",
    "load_registry",
    "parse_section",
]

REGISTRY_ENV = "TELESCOPE_ASSETS_REGISTRY"
CANONICAL_KEYS = ("imagetyp", "exptime", "date_obs", "filter", "object", "ra", "dec")
#: Keys a header_map may add: the time of day when DATE-OBS is a date alone.
OPTIONAL_KEYS = ("time_obs",)
FRAME_TYPES = ("science", "bias", "dark", "flat")
_SITE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_SECTION = re.compile(r"^\[(\d+):(\d+),(\d+):(\d+)\]$")
#: The night partitions start from when no site names its ``first_night``.
DEFAULT_FIRST_NIGHT = "2025-01-01"
#: Atmospheric extinction (mag per airmass) used for a filter whose site gives none: the
#: median values of a good mountain site (e.g. La Palma's, King 1985; CTIO's for ugriz).
#: A filter that is neither given nor listed here is a registry error.
DEFAULT_EXTINCTION = {
    "u": 0.45, "b": 0.25, "g": 0.18, "v": 0.15, "r": 0.10,
    "i": 0.06, "z": 0.05, "y": 0.05, "clear": 0.12, "l": 0.12,
}  # fmt: skip
_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RegistryError(ValueError):
    """The registry file is malformed; the message names the site and the field."""


def parse_section(section: str) -> tuple[slice, slice]:
    """Convert a FITS section string to numpy slices.

    Parameters
    ----------
    section : str
        A FITS-convention section, 1-based and inclusive, ``"[x1:x2,y1:y2]"``.

    Returns
    -------
    tuple of slice
        ``(rows, columns)`` slices for a numpy array indexed ``[y, x]``.

    Examples
    --------
    >>> parse_section("[17:528,1:520]")
    (slice(0, 520, None), slice(16, 528, None))
    """
    match = _SECTION.match(section.replace(" ", ""))
    if match is None:
        raise ValueError(f"not a FITS section of the form [x1:x2,y1:y2]: {section!r}")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if x1 < 1 or y1 < 1 or x2 < x1 or y2 < y1:
        raise ValueError(f"FITS section {section!r} is empty or starts below 1")
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


@dataclass(frozen=True)
class Camera:
    """A site's detector, as its raw frames are written."""

    name: str
    shape: tuple[int, int]
    gain: float
    read_noise: float
    pixel_scale: float
    saturation: float
    #: e-/s/pixel; bounds the dark master's check (a warm CCD's 0.05 if not given).
    dark_current: float = 0.05
    #: ADU; the simulator writes it, the pipeline measures the bias itself.
    bias_level: float = 1000.0
    dtype: str = "uint16"
    biassec: str | None = None
    trimsec: str | None = None

    @property
    def trimmed_shape(self) -> tuple[int, int]:
        """Shape of the imaging area after trimming, ``(ny, nx)``."""
        if self.trimsec is None:
            return self.shape
        rows, cols = parse_section(self.trimsec)
        return (rows.stop - rows.start, cols.stop - cols.start)


@dataclass(frozen=True)
class Site:
    """One telescope of the network."""

    name: str
    description: str
    latitude: float
    longitude: float
    elevation: float
    timezone: str
    camera: Camera
    filters: tuple[str, ...]
    header_map: dict[str, str]
    imagetyp_values: dict[str, tuple[str, ...]]
    identify_by: str = "header"
    site_keywords: tuple[str, ...] = ()
    site_aliases: tuple[str, ...] = ()
    median_seeing_arcsec: float = 1.5
    nominal_zero_point: dict[str, float] = field(default_factory=dict)
    dark_sky_mag: dict[str, float] = field(default_factory=dict)
    extinction: dict[str, float] = field(default_factory=lambda: {"g": 0.18, "r": 0.10})
    reference_catalog: str = Lake.REFCAT_PATTERN
    #: Other names of the filters, e.g. ``{"R": "r", "Rc": "r", "sloan_r": "r"}``;
    #: matched without regard to case, like the filter names themselves.
    filter_aliases: dict[str, str] = field(default_factory=dict)
    #: The filter of science and flat frames whose header names none.
    default_filter: str | None = None
    #: The earliest night this site's frames may belong to (archive data included).
    first_night: str = DEFAULT_FIRST_NIGHT
    #: Detection threshold, in units of the background RMS per pixel.
    detection_nsigma: float = 3.0
    #: Frames arrive already bias-, dark- and flat-corrected (by the acquisition
    #: software): no masters are made or waited for.
    precalibrated: bool = False
    #: The Minor Planet Center's code of the observatory, for its asteroid reports;
    #: ``XXX`` (the MPC's "no code yet") until it has one.
    mpc_code: str = "XXX"

    def canonical_filter(self, value: str | None) -> str | None:
        """The site's name for a filter as a header writes it (``None`` if unknown).

        Case is ignored; ``filter_aliases`` maps other spellings (``R``, ``Rc``, ``r'``).
        """
        if value is None:
            return None
        wanted = value.strip().lower()
        for band in self.filters:
            if band.lower() == wanted:
                return band
        for alias, band in self.filter_aliases.items():
            if alias.strip().lower() == wanted:
                return band
        return None

    def frame_type(self, value: str) -> str | None:
        """Map the image-type keyword's value to one of ``FRAME_TYPES`` (or ``None``)."""
        wanted = value.strip().lower()
        for kind, values in self.imagetyp_values.items():
            if wanted in (v.lower() for v in values):
                return kind
        return None

    def imagetyp_value(self, kind: str) -> str:
        """The string this site's software writes for frame type ``kind``."""
        return self.imagetyp_values[kind][0]

    @cached_property
    def location(self):
        """The site as an ``astropy.coordinates.EarthLocation``."""
        from astropy import units as u
        from astropy.coordinates import EarthLocation

        return EarthLocation.from_geodetic(
            lon=self.longitude * u.deg, lat=self.latitude * u.deg, height=self.elevation * u.m
        )


@dataclass(frozen=True)
class SiteRegistry:
    """All sites, by name, and the rules to recognise a frame's site."""

    sites: dict[str, Site]
    source: str

    def __getitem__(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise KeyError(
                f"site {name!r} is not in the registry {self.source}; known sites: "
                f"{', '.join(sorted(self.sites))}. Add an entry there to accept its frames."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.sites

    @property
    def first_night(self) -> str:
        """The earliest ``first_night`` of any site: where the night partitions start."""
        return min(site.first_night for site in self.sites.values())

    def __iter__(self):
        return iter(self.sites.values())

    @property
    def names(self) -> list[str]:
        """Site names, sorted."""
        return sorted(self.sites)

    def identify(self, header_values: dict[str, str]) -> str | None:
        """Return the site named by a header, or ``None`` if no known site is named.

        Parameters
        ----------
        header_values : dict
            Keyword to value for every keyword of the header.
        """
        for site in self.sites.values():
            aliases = {a.lower() for a in (*site.site_aliases, site.name)}
            for keyword in site.site_keywords:
                value = header_values.get(keyword)
                if value is not None and str(value).strip().lower() in aliases:
                    return site.name
        return None

    def with_camera(self, site: str, **changes: Any) -> SiteRegistry:
        """Return a copy in which one site's camera has ``changes`` (e.g. another shape)."""
        sites = dict(self.sites)
        sites[site] = replace(sites[site], camera=replace(sites[site].camera, **changes))
        return replace(self, sites=sites)

    def to_yaml(self) -> str:
        """Serialise to the registry's YAML form (round-trips through ``load_registry``)."""
        out: dict[str, Any] = {"sites": {}}
        for site in self.sites.values():
            cam = {k: v for k, v in site.camera.__dict__.items() if v is not None}
            cam["shape"] = list(site.camera.shape)
            entry = {
                k: v
                for k, v in site.__dict__.items()
                if k not in ("name", "camera", "location") and not k.startswith("_")
            }
            entry["filters"] = list(site.filters)
            entry["site_keywords"] = list(site.site_keywords)
            entry["site_aliases"] = list(site.site_aliases)
            entry["imagetyp_values"] = {k: list(v) for k, v in site.imagetyp_values.items()}
            entry["camera"] = cam
            out["sites"][site.name] = entry
        return yaml.safe_dump(out, sort_keys=False)


def _extinction(entry: dict[str, Any], where: str) -> dict[str, float]:
    """Each filter's extinction: the entry's, else the default for its band."""
    given = {str(k): float(v) for k, v in (entry.get("extinction") or {}).items()}
    out = {}
    for band in entry["filters"]:
        band = str(band)
        value = given.get(band, DEFAULT_EXTINCTION.get(band.lower()))
        if value is None:
            raise RegistryError(
                f"{where}: no extinction for filter {band!r}: add extinction: {{{band}: "
                f"<mag per airmass>}} (defaults exist only for {sorted(DEFAULT_EXTINCTION)})"
            )
        out[band] = value
    return out


def _boolean(value, where: str) -> bool:
    """A YAML boolean, strictly (``"no"`` as a string is not False)."""
    if not isinstance(value, bool):
        raise RegistryError(f"{where} must be true or false, not {value!r}")
    return value


def _check_filters(site: Site, where: str) -> None:
    """Aliases and the default filter name known filters; names differ in more than case."""
    lowered = [b.lower() for b in site.filters]
    if len(set(lowered)) != len(lowered):
        raise RegistryError(f"{where}: filters {list(site.filters)} differ only in case")
    for alias, band in site.filter_aliases.items():
        if band not in site.filters:
            raise RegistryError(
                f"{where}: filter_aliases maps {alias!r} to {band!r}, not one of "
                f"{list(site.filters)}"
            )
    if site.default_filter is not None and site.default_filter not in site.filters:
        raise RegistryError(
            f"{where}: default_filter {site.default_filter!r} is not one of {list(site.filters)}"
        )
    if not _NIGHT.match(site.first_night):
        raise RegistryError(f"{where}: first_night is a date YYYY-MM-DD, not {site.first_night!r}")
    if not (len(site.mpc_code) == 3 and site.mpc_code.isalnum()):
        raise RegistryError(
            f"{where}: mpc_code {site.mpc_code!r} is not three letters or digits (the MPC's "
            "observatory code, e.g. 950; XXX until the site has one)"
        )
    if not 1.0 <= site.detection_nsigma <= 50.0:
        raise RegistryError(f"{where}: detection_nsigma {site.detection_nsigma} is not 1–50")


def _site_from_entry(name: str, entry: dict[str, Any], source: str) -> Site:
    where = f"site {name!r} in {source}"
    if not _SITE_NAME.match(name):
        raise RegistryError(f"{where}: a site name is lower-case letters, digits and '_'")
    try:
        cam = dict(entry["camera"])
        cam["shape"] = tuple(int(v) for v in cam["shape"])
        camera = Camera(**cam)
        header_map = dict(entry["header_map"])
        imagetyp_values = {k: tuple(v) for k, v in entry["imagetyp_values"].items()}
        site = Site(
            name=name,
            description=entry.get("description", ""),
            latitude=float(entry["latitude"]),
            longitude=float(entry["longitude"]),
            elevation=float(entry["elevation"]),
            timezone=entry["timezone"],
            camera=camera,
            filters=tuple(entry["filters"]),
            header_map=header_map,
            imagetyp_values=imagetyp_values,
            identify_by=entry.get("identify_by", "header"),
            site_keywords=tuple(entry.get("site_keywords", ())),
            site_aliases=tuple(entry.get("site_aliases", ())),
            median_seeing_arcsec=float(entry.get("median_seeing_arcsec", 1.5)),
            nominal_zero_point=dict(entry.get("nominal_zero_point", {})),
            dark_sky_mag=dict(entry.get("dark_sky_mag", {})),
            extinction=_extinction(entry, where),
            reference_catalog=entry.get("reference_catalog", Lake.REFCAT_PATTERN),
            filter_aliases={str(k): str(v) for k, v in entry.get("filter_aliases", {}).items()},
            default_filter=entry.get("default_filter"),
            first_night=str(entry.get("first_night", DEFAULT_FIRST_NIGHT)),
            detection_nsigma=float(entry.get("detection_nsigma", 3.0)),
            precalibrated=_boolean(entry.get("precalibrated", False), f"{where}: precalibrated"),
            mpc_code=str(entry.get("mpc_code", "XXX")),
        )
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"{where}: missing or malformed field ({exc})") from exc
    _check_filters(site, where)
    missing = [k for k in CANONICAL_KEYS if k not in header_map]
    if missing:
        raise RegistryError(f"{where}: header_map lacks {missing}")
    unknown = sorted(set(header_map) - set(CANONICAL_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise RegistryError(
            f"{where}: header_map has unknown keys {unknown}; known: "
            f"{list(CANONICAL_KEYS + OPTIONAL_KEYS)}"
        )
    if set(imagetyp_values) != set(FRAME_TYPES):
        raise RegistryError(f"{where}: imagetyp_values must name exactly {FRAME_TYPES}")
    if site.identify_by not in ("header", "prefix"):
        raise RegistryError(f"{where}: identify_by is 'header' or 'prefix'")
    if site.identify_by == "header" and not site.site_keywords:
        raise RegistryError(f"{where}: identify_by: header needs site_keywords")
    for section in (camera.biassec, camera.trimsec):
        if section is not None:
            try:
                parse_section(section)
            except ValueError as exc:
                raise RegistryError(f"{where}: {exc}") from exc
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(site.timezone)
    except Exception as exc:  # ZoneInfoNotFoundError and ValueError for malformed keys
        raise RegistryError(f"{where}: unknown IANA timezone {site.timezone!r}") from exc
    return site


def load_registry(path: str | os.PathLike | None = None) -> SiteRegistry:
    """Load the site registry.

    Parameters
    ----------
    path : path-like, optional
        A registry YAML file. Defaults to ``$TELESCOPE_ASSETS_REGISTRY`` or, if unset,
        the packaged ``sites.yaml``.

    Returns
    -------
    SiteRegistry
    """
    path = path or os.environ.get(REGISTRY_ENV)
    if path:
        source = str(path)
        text = Path(path).read_text()
    else:
        source = "the packaged registry (telescope_assets/registry/sites.yaml)"
        text = resources.files(__package__).joinpath("sites.yaml").read_text()
    return _parse(text, source)


@lru_cache(maxsize=8)
def _parse(text: str, source: str) -> SiteRegistry:
    """The registry a YAML text describes.

    Cached: a registry is frozen, so one parse serves every asset of a run (60 ms each,
    six per frame's run).
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("sites"), dict):
        raise RegistryError(f"{source}: expected a mapping with a 'sites' section")
    sites = {name: _site_from_entry(name, entry, source) for name, entry in data["sites"].items()}
    if not sites:
        raise RegistryError(f"{source}: no sites")
    return SiteRegistry(sites=sites, source=source)
