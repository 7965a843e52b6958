"""``telescope-sim``: simulate the network into an incoming folder, with a progress bar."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the simulator from the command line."""
    from tqdm import tqdm

    from telescope_assets.registry import load_registry
    from telescope_assets.simulate.network import DEMO_NIGHTS, SimulationConfig, simulate_network
    from telescope_assets.simulate.optics import FAMILIES, family

    parser = argparse.ArgumentParser(
        prog="telescope-sim",
        description="Simulate the telescope network: frames into INCOMING/<site>/, truth "
        "tables and reference catalogues into TRUTH/.",
    )
    parser.add_argument("--incoming", default="data/incoming", help="drop folder for frames")
    parser.add_argument("--truth", default="data/truth", help="folder for truth tables")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--nights", nargs="+", default=list(DEMO_NIGHTS), metavar="YYYY-MM-DD")
    parser.add_argument("--sites", nargs="+", default=None, help="default: every site")
    parser.add_argument("--science-per-night", type=int, default=6)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="override every camera to SIZE x SIZE pixels (e.g. 2048, 4096); writes the "
        "registry used to TRUTH/registry.yaml so the pipeline can be pointed at it",
    )
    parser.add_argument("--registry", default=None, help="registry YAML (default: packaged)")
    parser.add_argument(
        "--family",
        default=None,
        choices=sorted(FAMILIES),
        help="give the --sites (default: every site) this camera family's optics, pixel "
        "scale and seeing (simulate.optics.FAMILIES); writes the registry used to "
        "TRUTH/registry.yaml",
    )
    args = parser.parse_args(argv)

    registry = load_registry(args.registry)
    psf = {}
    if args.family:
        optics = family(args.family)
        for site in args.sites or registry.names:
            registry = optics.apply(registry, site)
            psf[site] = optics.psf
    if args.size:
        for site in registry.names:
            registry = registry.with_camera(
                site, shape=(args.size, args.size), biassec=None, trimsec=None
            )
    cfg = SimulationConfig(
        seed=args.seed,
        nights=tuple(args.nights),
        sites=tuple(args.sites) if args.sites else None,
        science_per_night=args.science_per_night,
        psf=psf,
    )
    bar = tqdm(desc="simulating frames", unit="frame", file=sys.stderr)
    frames = simulate_network(
        registry,
        args.incoming,
        args.truth,
        cfg,
        progress=bar.update,
        on_total=lambda n: setattr(bar, "total", n),
    )
    bar.close()
    if args.size or args.family:
        from pathlib import Path

        Path(args.truth, "registry.yaml").write_text(registry.to_yaml())
    counts = frames.groupby(["site", "kind"]).size().unstack(fill_value=0)
    print(counts.to_string())
    print(f"{len(frames)} frames in {args.incoming}, truth in {args.truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
