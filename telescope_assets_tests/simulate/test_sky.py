"""The shared sky's asteroids: where, how fast, how bright."""

import numpy as np

from telescope_assets.simulate.sky import FIELDS, asteroid_positions, make_asteroids, make_sky


def test_asteroids_move_at_their_rate_and_direction_and_cross_the_fields():
    ast = make_asteroids(3, FIELDS, 61117.0, 61120.0)
    main, neo = ast[ast.kind == "main_belt"], ast[ast.kind == "neo"]
    assert len(main) > 2 * len(neo) > 0
    assert main.rate_arcsec_per_hour.between(15, 60).all()
    assert neo.rate_arcsec_per_hour.between(75, 1500).all()
    # Fainter ones are more numerous, as counts of asteroids are.
    assert (main.r > 18.5).mean() > 0.6
    # An hour after its reference time each has moved its rate, towards its angle.
    t0 = ast.mjd_ref.to_numpy()
    ra0, dec0 = asteroid_positions(ast, t0)
    ra1, dec1 = asteroid_positions(ast, t0 + 1 / 24)
    east = (ra1 - ra0) * np.cos(np.radians(dec0)) * 3600
    north = (dec1 - dec0) * 3600
    np.testing.assert_allclose(np.hypot(east, north), ast.rate_arcsec_per_hour, rtol=1e-3)
    pa = np.degrees(np.arctan2(east, north)) % 360
    np.testing.assert_allclose(((pa - ast.pa_deg + 180) % 360) - 180, 0, atol=0.1)


def test_no_span_no_asteroids_and_the_stars_do_not_change():
    quiet, busy = (
        make_sky(5, stars_per_field=50),
        make_sky(5, stars_per_field=50, mjd_span=(61117.0, 61118.0)),
    )
    assert len(quiet.asteroids) == 0 < len(busy.asteroids)
    assert quiet.stars.equals(busy.stars)
    assert quiet.transients.equals(busy.transients)
