"""Raw frames, calibration masters and calibrated frames."""
