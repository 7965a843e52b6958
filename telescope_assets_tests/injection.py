"""A transient put into raw simulated frames, where the tests need one for certain.

The simulated sky's own transients and the residuals of a subtraction come and go with
the code (a cleaner subtraction leaves nothing to alert on): tests of the alert path
put a bright point source into raw frames, at one place of the sky.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Electrons in the injected point source: an S/N of a few hundred.
TRANSIENT_E = 60_000.0


def inject(path: Path, site, refcat: pd.DataFrame, frame, at=None) -> dict:
    """Add a point source to a raw frame (in place): at sky position ``at``, or far from
    every catalogued star. Placed by the frame's true pointing (the simulator's truth), so
    that two frames get it at one place of the sky."""
    from astropy.io import fits

    from telescope_assets.simulate.network import true_wcs
    from telescope_assets.simulate.render import Conditions, Source, render_sources

    cam = site.camera
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float64)
        header = hdul[0].header
    wcs = true_wcs(site, frame.true_crval1, frame.true_crval2, frame.true_rotation_deg)
    if at is None:
        x_star, y_star = wcs.all_world2pix(refcat.ra, refcat.dec, 0)
        grid = np.array([(x, y) for x in range(60, 200, 7) for y in range(60, 200, 7)], float)
        dist = np.hypot(grid[:, None, 0] - x_star, grid[:, None, 1] - y_star).min(axis=1)
        x, y = grid[int(np.argmax(dist))]
    else:
        x, y = (float(v) for v in wcs.all_world2pix(at[0], at[1], 0))
    fwhm = frame.seeing_arcsec / cam.pixel_scale
    image = render_sources(
        data.shape,
        [Source(np.array([x]), np.array([y]), np.array([TRANSIENT_E]))],
        fwhm,
        Conditions(),
    )
    rng = np.random.default_rng(0)
    data += rng.poisson(np.clip(image, 0, None)) / cam.gain
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path, overwrite=True)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return {"x": float(x), "y": float(y), "ra": float(ra), "dec": float(dec)}
