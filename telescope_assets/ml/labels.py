"""The classes and flags the models predict: shared by training data, models and consumers."""

from telescope_assets.science.typing import TYPE_CLASSES

__all__ = ["FLAG_NAMES", "QUALITY_CLASSES", "RB_CLASSES", "TYPE_CLASSES"]

QUALITY_CLASSES = ("good", "medium", "bad")
FLAG_NAMES = ("clouds", "poor_seeing", "tracking", "focus", "hot_pixels", "satellite_trail")
RB_CLASSES = ("real", "cosmic_ray", "bad_pixel", "satellite_trail", "bad_subtraction")
