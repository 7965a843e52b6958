"""Small PNG plots for asset metadata and reports (matplotlib, Agg, no Dagster)."""

import base64
import io

__all__ = [
    "conditions_plot",
    "cutout_triplet",
    "light_curve",
    "markdown_image",
    "night_quality_plot",
    "offsets_plot",
    "phased_light_curve",
    "quality_bars",
    "site_scores",
    "sky_coverage",
]


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows a PNG inline (a data URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def night_quality_plot(table) -> bytes:
    """Seeing, zero point and source count through one night, per filter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), dpi=80, sharex=True)
    hours = (table.mjd - table.mjd.min()) * 24 if len(table) else table.mjd
    for band, group in table.assign(h=hours).groupby("filter"):
        axes[0].plot(group.h, group.seeing_arcsec, "o-", label=band)
        axes[1].plot(group.h, group.zero_point, "o-", label=band)
        axes[2].plot(group.h, group.n_sources, "o-", label=band)
    for ax, title in zip(
        axes, ("seeing FWHM (arcsec)", "zero point (mag)", "sources"), strict=True
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("hours since first frame", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(*args, **kwargs)


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def quality_bars(per_site) -> bytes:
    """Stacked bars: good / medium / bad frames and quarantined files per site."""
    plt, fig, ax = _figure(figsize=(6, 2.4), dpi=80)
    bottom = None
    colours = {
        "good": "tab:green",
        "medium": "tab:orange",
        "bad": "tab:red",
        "quarantined": "tab:gray",
    }
    for col, colour in colours.items():
        values = per_site[col].to_numpy()
        ax.bar(per_site.site, values, bottom=bottom, color=colour, label=col)
        bottom = values if bottom is None else bottom + values
    ax.set_ylabel("frames", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, ncol=4)
    return _png(plt, fig)


def conditions_plot(quality) -> bytes:
    """Seeing and transparency against UTC hour, one colour per site."""
    plt, fig, axes = _figure(1, 2, figsize=(8, 2.6), dpi=80, sharex=True)
    t0 = float(quality.mjd.min())
    for site, g in quality.groupby("site"):
        hours = (g.mjd - t0) * 24
        axes[0].plot(hours, g.seeing_arcsec, "o", label=site, ms=4)
        axes[1].plot(hours, g.transparency, "o", label=site, ms=4)
    axes[0].set_title("seeing FWHM (arcsec)", fontsize=9)
    axes[1].set_title("transparency", fontsize=9)
    for ax in axes:
        ax.set_xlabel("hours since the night's first frame", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return _png(plt, fig)


def sky_coverage(quality) -> bytes:
    """Where the frames pointed: ``ra_center``, ``dec_center`` per frame, a colour a site."""
    plt, fig, ax = _figure(figsize=(5, 3), dpi=80)
    for site, g in quality.groupby("site"):
        ax.scatter(
            g.ra_center,
            g.dec_center,
            s=30 + 10 * g.groupby("object").object.transform("size"),
            alpha=0.5,
            label=site,
        )
    _sky_axes(ax, legend_size=7)
    return _png(plt, fig)


def _sky_axes(ax, legend_size: int) -> None:
    """RA growing to the left, as the sky is seen; labelled axes and a legend."""
    ax.invert_xaxis()
    ax.set_xlabel("RA (deg)", fontsize=8)
    ax.set_ylabel("Dec (deg)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=legend_size)


def tracklets_plot(moving) -> bytes:
    """Each tracklet's detections on the sky, joined in time order, a marker per site."""
    plt, fig, ax = _figure(figsize=(5, 3), dpi=80)
    markers = dict(zip(sorted(set(moving.site)), "osD^v<>", strict=False))
    for desig, g in moving.sort_values("mjd").groupby("designation"):
        (line,) = ax.plot(g.ra, g.dec, "-", lw=1, label=desig)
        for site, h in g.groupby("site"):
            ax.scatter(h.ra, h.dec, marker=markers.get(site, "o"), s=18, color=line.get_color())
    _sky_axes(ax, legend_size=6)
    return _png(plt, fig)


def cutout_triplet(images, title: str) -> bytes:
    """Science, reference and difference cutouts side by side."""
    import numpy as np

    plt, fig, axes = _figure(1, 3, figsize=(6, 2.2), dpi=80)
    for ax, image, name in zip(axes, images, ("science", "reference", "difference"), strict=True):
        if image is not None:
            lo, hi = np.nanpercentile(image, [1, 99.5])
            ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    return _png(plt, fig)


def light_curve(points, title: str) -> bytes:
    """Magnitude against MJD per filter, with error bars (brighter up)."""
    plt, fig, ax = _figure(figsize=(5, 2.4), dpi=80)
    for band, g in points.groupby("filter"):
        ax.errorbar(g.mjd, g.mag, g.mag_err, fmt="o", ms=3, label=band)
    ax.invert_yaxis()
    ax.set_xlabel("MJD", fontsize=8)
    ax.set_ylabel("mag", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def phased_light_curve(points, period: float, title: str) -> bytes:
    """Magnitude against phase (two cycles) per filter, each filter about its median."""
    plt, fig, ax = _figure(figsize=(5, 2.4), dpi=80)
    for band, g in points.groupby("filter"):
        phase = (g.mjd / period) % 1.0
        y = g.mag - g.mag.median()
        for shift in (0, 1):
            ax.errorbar(
                phase + shift,
                y,
                g.mag_err,
                fmt="o",
                ms=3,
                label=band if shift == 0 else None,
                color=f"C{'gri'.find(band) % 10}",
            )
    ax.invert_yaxis()
    ax.set_xlabel(f"phase (P = {period:.5f} d)", fontsize=8)
    ax.set_ylabel("Δmag", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def offsets_plot(offsets) -> bytes:
    """Zero-point offset of every site × night × filter, with its error."""
    plt, fig, ax = _figure(figsize=(6, 2.4), dpi=80)
    for (site, band), g in offsets.groupby(["site", "filter"]):
        ax.errorbar(
            g.night, g.offset * 1000, g.offset_err * 1000, fmt="o", ms=4, label=f"{site} {band}"
        )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("offset (mmag)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=4)
    return _png(plt, fig)


def site_scores(scores: dict, threshold: float, title: str) -> bytes:
    """p(real) of a site's held-out real and bogus examples, one panel per model."""
    import numpy as np

    models = [k for k in ("network", "fine_tuned") if k in scores]
    plt, fig, axes = _figure(1, len(models), figsize=(4.2 * len(models), 3.2), squeeze=False)
    real = np.asarray(scores["y"]) == 0
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes[0], models, strict=True):
        p = np.asarray(scores[name])
        ax.hist(p[real], bins=bins, alpha=0.6, label=f"real (fakes, {real.sum()})", color="C0")
        ax.hist(p[~real], bins=bins, alpha=0.6, label=f"bogus ({(~real).sum()})", color="C3")
        ax.axvline(threshold, color="k", lw=1, ls="--")
        if len(p):
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no held-out examples", ha="center", transform=ax.transAxes)
        ax.set_xlabel("p(real)")
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)
