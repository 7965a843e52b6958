"""Small PNG plots for asset metadata and reports (matplotlib, Agg, no Dagster)."""

import base64
import io

__all__ = ["markdown_image", "night_quality_plot"]


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
