"""Metadata helpers shared by every asset module."""

import dagster as dg
import pandas as pd

__all__ = ["md_table"]


def md_table(df: pd.DataFrame, rows: int = 30, floatfmt: str = "g") -> dg.MetadataValue:
    """The first ``rows`` rows of a table as Markdown, or ``_(none)_`` when it is empty."""
    if not len(df):
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(df.head(rows).to_markdown(index=False, floatfmt=floatfmt))
