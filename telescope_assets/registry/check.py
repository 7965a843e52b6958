"""``telescope-site check``: validate a registry entry against a site's sample frames.

A site owner writes one registry entry and runs::

    telescope-site check my_sites.yaml frames/*.fits [--site NAME] [--lake ROOT]
    telescope-site refcat FIELD gaia_export.fits --bands g,r --epoch 2026.2

(the second installs a field's reference catalogue: ``registry/refcat.py``).

Each frame goes through the same validation as ingestion (``inspect_frame``), and the
header is compared with the entry: which mapped keywords are absent, what the
image-type and filter keywords say, the detector shape and the overscan/trim sections
against the header's own ``BIASSEC``/``TRIMSEC``, gain and read noise, which night each
frame lands in (and whether the partitions cover it), whether the frame carries a WCS or
an approximate pointing, and, given a lake, whether its field has a reference catalogue.
The exit status is 0 when every frame would be accepted, 1 otherwise, 2 for a registry
that does not load.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from telescope_assets.registry import (
    RegistryError,
    Site,
    SiteRegistry,
    load_registry,
    parse_section,
    refcat,
)

__all__ = ["FrameReport", "check_frames", "main"]


@dataclass
class FrameReport:
    """What one sample frame says about the registry entry."""

    path: str
    site: str | None = None
    accepted: bool = False
    reason: str | None = None
    detail: str = ""
    advice: str = ""
    facts: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_frames(
    registry: SiteRegistry,
    paths: list[str | Path],
    site_name: str | None = None,
    lake_root: str | None = None,
) -> list[FrameReport]:
    """Validate sample frames against the registry; one report per frame."""
    from telescope_assets.science.frames import FrameError, inspect_frame, parse_header

    reports = []
    for path in paths:
        report = FrameReport(str(path))
        data = Path(path).read_bytes()
        try:
            info, header = inspect_frame(data, registry, prefix_site=site_name)
        except FrameError as exc:
            report.reason, report.detail, report.advice = exc.reason, exc.detail, exc.advice
            report.site = exc.site or site_name
            try:
                header, _ = parse_header(data)
            except FrameError:
                header = None
        else:
            report.accepted = True
            report.site = info.site
            report.facts = {
                "type": info.frame_type,
                "night": info.night,
                "date_obs": info.date_obs,
                "exptime": info.exptime,
                "filter": info.filter,
                "object": info.object,
                "shape": f"{info.ny}x{info.nx}",
            }
            if info.ra_deg is not None:
                report.facts["pointing"] = f"{info.ra_deg:.4f} {info.dec_deg:+.4f}"
        if header is not None and report.site in registry:
            _compare(report, header, registry, registry[report.site], lake_root)
        reports.append(report)
    return reports


def _compare(report, header, registry: SiteRegistry, site: Site, lake_root) -> None:
    """Header against entry: the problems that reject frames and the notes that do not."""
    for key, keyword in site.header_map.items():
        if keyword not in header:
            where = "required" if key in ("imagetyp", "exptime", "date_obs") else "optional"
            report.notes.append(f"header_map.{key}: {keyword} is absent ({where})")
    cam = site.camera
    shape = (header.get("NAXIS2"), header.get("NAXIS1"))
    if None not in shape and tuple(shape) != tuple(cam.shape):
        report.problems.append(
            f"camera.shape is {list(cam.shape)}, the frame is [{shape[0]}, {shape[1]}]"
        )
    for name, ours in (("BIASSEC", cam.biassec), ("TRIMSEC", cam.trimsec)):
        theirs = header.get(name)
        if theirs is None:
            continue
        try:
            same = ours is not None and parse_section(str(theirs)) == parse_section(ours)
        except ValueError:
            same = False
        if not same:
            report.problems.append(
                f"camera.{name.lower()} is {ours!r}, the header says {str(theirs).strip()!r}"
            )
    for name, ours in (("GAIN", cam.gain), ("RDNOISE", cam.read_noise)):
        theirs = header.get(name)
        if isinstance(theirs, int | float) and abs(float(theirs) - ours) > 0.05 * abs(ours):
            report.notes.append(f"camera {name} {ours} in the registry, {theirs} in the header")
    night = report.facts.get("night")
    if night is not None and night < registry.first_night:
        report.problems.append(
            f"night {night} is before the partitions' first night {registry.first_night}: "
            f"set first_night: {night} (or earlier) in the site's entry"
        )
    if report.facts.get("type") == "science":
        from telescope_assets.science.frames import has_sky_wcs

        has_wcs = has_sky_wcs(header)
        has_pointing = "pointing" in report.facts
        if has_wcs:
            how = "header WCS, refined against the reference catalogue"
        elif has_pointing:
            how = "no header WCS: solved from the header's pointing and the pixel scale"
        else:
            how = (
                "no header WCS and no pointing: solved blind about the reference "
                "catalogue's centre (map RA/DEC in header_map if the camera writes them)"
            )
        report.notes.append(f"astrometry: {how}")
        if lake_root is not None:
            field_name = report.facts.get("object") or "_unknown_"
            rel = site.reference_catalog.format(field=field_name)
            if not (Path(lake_root) / rel).exists():
                report.notes.append(
                    f"no reference catalogue at {rel}: no photometric zero point until one "
                    "is installed (docs/sites.md)"
                )


def _print(reports: list[FrameReport], out) -> None:
    for r in reports:
        status = "ok" if r.accepted and not r.problems else "PROBLEM"
        print(f"{status:8s} {r.path}  (site {r.site or '?'})", file=out)
        if r.facts:
            print("         " + ", ".join(f"{k} {v}" for k, v in r.facts.items()), file=out)
        if r.reason:
            print(f"         rejected: {r.reason}: {r.detail}", file=out)
            print(f"         what to do: {r.advice}", file=out)
        for p in r.problems:
            print(f"         problem: {p}", file=out)
        for n in r.notes:
            print(f"         note: {n}", file=out)
    accepted = [r for r in reports if r.accepted and not r.problems]
    types = Counter(r.facts.get("type") for r in accepted)
    nights = Counter(r.facts.get("night") for r in accepted)
    filters = Counter(r.facts.get("filter") for r in accepted if r.facts.get("filter"))
    print(
        f"\n{len(accepted)} of {len(reports)} frames would be accepted; "
        f"types {dict(types)}; nights {dict(sorted(nights.items()))}; filters {dict(filters)}",
        file=out,
    )
    reasons = Counter(r.reason for r in reports if r.reason)
    if reasons:
        print(f"rejected: {dict(reasons)}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``telescope-site``."""
    parser = argparse.ArgumentParser(prog="telescope-site", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a registry entry against sample frames")
    check.add_argument("registry", help="the registry YAML file")
    check.add_argument("frames", nargs="+", help="sample raw frames (any FITS packing)")
    check.add_argument("--site", help="the site whose incoming folder the frames would be in")
    check.add_argument("--lake", help="lake root, to look for the fields' reference catalogues")
    refcat.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "refcat":
        return refcat.run(args)
    try:
        registry = load_registry(args.registry)
    except (RegistryError, OSError) as exc:
        print(f"registry: {exc}", file=sys.stderr)
        return 2
    if args.site is not None and args.site not in registry:
        known = registry.names
        print(f"--site {args.site!r} is not in {registry.source}: {known}", file=sys.stderr)
        return 2
    reports = check_frames(registry, args.frames, args.site, args.lake)
    _print(reports, sys.stdout)
    return 0 if all(r.accepted and not r.problems for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
