"""Helpers of the reliability suite: one good frame of the session's simulated night."""

import pytest


@pytest.fixture(scope="session")
def good_frame(simulated) -> tuple[str, bytes]:
    """``(site, bytes)`` of one good simulated science frame (standard dialect)."""
    from pathlib import Path

    path = sorted(Path(simulated["incoming"], "sidingspring").glob("*_science.fits"))[0]
    return "sidingspring", path.read_bytes()
