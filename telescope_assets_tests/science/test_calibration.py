import dataclasses

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import mad_std

from telescope_assets.registry import Camera
from telescope_assets.science import calibration
from telescope_assets.science.frames import read_image
from telescope_assets_tests.conftest import real_data, real_image


def _raws(simulated, site, kind, band=None):
    f = simulated["frames"]
    rows = f[(f.site == site) & (f.kind == kind)]
    if band is not None:
        rows = rows[rows["filter"] == band]
    return [
        read_image((simulated["incoming"] / r.filename).read_bytes()) for r in rows.itertuples()
    ], rows


@pytest.fixture(scope="module")
def sutherland(simulated, registry):
    """Masters and one science frame of the overscan camera, by our code and by ccdproc."""
    site = registry["sutherland"]
    cam = site.camera
    biases, _ = _raws(simulated, "sutherland", "bias")
    darks, drows = _raws(simulated, "sutherland", "dark")
    sci, srows = _raws(simulated, "sutherland", "science")
    band = srows.iloc[0]["filter"]
    flats, frows = _raws(simulated, "sutherland", "flat", band)
    bias = calibration.make_master_bias(biases, cam)
    dark = calibration.make_master_dark(darks, drows.exptime.tolist(), cam, bias)
    flat = calibration.make_master_flat(flats, frows.exptime.tolist(), cam, bias, dark)
    return {
        "cam": cam,
        "bias": bias,
        "dark": dark,
        "flat": flat,
        "biases": biases,
        "sci": sci[0],
        "exptime": float(srows.iloc[0].exptime),
    }


def _calibrate(m, detect_cosmics=True):
    """Our calibration of the fixture's science frame with its masters."""
    return calibration.calibrate_frame(
        m["sci"],
        m["exptime"],
        m["cam"],
        m["bias"],
        m["dark"],
        m["flat"],
        detect_cosmics=detect_cosmics,
    )


def _ccd_reduce(raw, cam, gain=True):
    ccd = CCDData(raw.astype(float), unit="adu")
    ccd = ccdproc.subtract_overscan(ccd, fits_section=cam.biassec, median=True, model=None)
    ccd = ccdproc.trim_image(ccd, fits_section=cam.trimsec)
    if gain:
        ccd = ccdproc.gain_correct(ccd, cam.gain * u.electron / u.adu)
    return ccd


def test_master_bias_equals_ccdproc_combine(sutherland):
    cam = sutherland["cam"]
    ccds = [_ccd_reduce(b, cam) for b in sutherland["biases"]]
    theirs = ccdproc.combine(
        ccds,
        method="average",
        sigma_clip=True,
        sigma_clip_low_thresh=3,
        sigma_clip_high_thresh=3,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
    )
    np.testing.assert_allclose(sutherland["bias"], theirs.data, rtol=1e-5)


def test_calibrated_frame_equals_ccd_process(sutherland):
    cam = sutherland["cam"]
    ours = _calibrate(sutherland, detect_cosmics=False)
    ccd = CCDData(
        sutherland["sci"].astype(float), unit="adu", meta={"exptime": sutherland["exptime"]}
    )
    dark = CCDData(sutherland["dark"], unit="electron", meta={"exptime": 1.0})
    theirs = ccdproc.ccd_process(
        ccd,
        oscan=cam.biassec,
        trim=cam.trimsec,
        gain=cam.gain * u.electron / u.adu,
        master_bias=CCDData(sutherland["bias"], unit="electron"),
        dark_frame=dark,
        exposure_key="exptime",
        exposure_unit=u.s,
        dark_scale=True,
        master_flat=CCDData(sutherland["flat"], unit=""),
    )
    assert ours.sci.shape == theirs.shape == cam.trimmed_shape
    np.testing.assert_allclose(ours.sci, theirs.data, rtol=1e-5)


def test_calibrated_frame_is_flat_and_errors_are_honest(simulated, sutherland):
    """Sky is flat after calibration and (sky - median)/ERR has unit spread."""
    sutherland["cam"]
    cal = _calibrate(sutherland)
    good = cal.mask == 0
    sky = np.median(cal.sci[good])
    quadrants = [cal.sci[:128, :128], cal.sci[:128, 128:], cal.sci[128:, :128], cal.sci[128:, 128:]]
    levels = np.array([np.median(q) for q in quadrants])
    assert np.ptp(levels) < 0.02 * sky  # vignetting (8 % at the corners) is gone
    pulls = (cal.sci[good] - sky) / cal.err[good]
    assert mad_std(pulls) == pytest.approx(1.0, abs=0.1)


def test_mask_flags_hot_columns_saturation_and_cosmics(simulated, registry, sutherland):
    from telescope_assets.simulate.render import camera_defects
    from telescope_assets_tests.conftest import sim_seed

    sutherland["cam"]
    cal = _calibrate(sutherland)
    defects = camera_defects(registry["sutherland"], sim_seed())
    for col in defects.hot_columns:
        assert (cal.mask[:, col] & calibration.MASK_BITS["bad"]).all()
    f = simulated["frames"]
    row = f[(f.site == "sutherland") & (f.kind == "science")].iloc[0]
    assert cal.n_saturated == row.n_saturated


def test_cosmic_rays_are_masked_and_star_cores_are_not():
    """Injected hits are found; the cores of 2.5 px FWHM stars are left alone."""
    from telescope_assets.simulate.render import Conditions, Source, render_sources

    rng = np.random.default_rng(3)
    cam = Camera(
        name="t",
        shape=(300, 300),
        gain=1.0,
        read_noise=5.0,
        dark_current=0.0,
        pixel_scale=1.0,
        saturation=1e9,
        bias_level=0,
    )
    stars = Source(rng.uniform(10, 290, 80), rng.uniform(10, 290, 80), rng.uniform(2e3, 2e5, 80))
    light = render_sources(cam.shape, [stars], 2.5, Conditions())
    image = rng.poisson(light + 200.0).astype(float) + rng.normal(0, 5.0, cam.shape)
    hits = [(int(y), int(x)) for y, x in rng.integers(5, 295, (40, 2))]
    for y, x in hits:
        image[y, x] += rng.uniform(1500, 6000)
    zero, one = np.zeros(cam.shape), np.ones(cam.shape)
    cal = calibration.calibrate_frame(image, 1.0, cam, zero, zero, one)
    cr = (cal.mask & calibration.MASK_BITS["cosmic_ray"]) > 0
    found = np.mean([cr[y, x] for y, x in hits])
    cores = [(round(y), round(x)) for x, y in zip(stars.x, stars.y, strict=True)]
    flagged_cores = np.mean([cr[y, x] for y, x in cores])
    assert found >= 0.95
    assert flagged_cores <= 0.02


def test_real_saao_frame_overscan_and_trim_from_its_header():
    raw, cam, _ = _saao()
    with fits.open(real_data("images", "saao_raw", "a8280271.fits")) as hdul:
        header = hdul[0].header
    ours = calibration.overscan_and_trim(raw, cam)
    theirs = _ccd_reduce(raw, cam, gain=False)
    assert ours.shape == (520, 512)
    np.testing.assert_allclose(ours, theirs.data, rtol=1e-5, atol=1e-9)
    # The overscan itself, corrected the same way, sits at zero.
    rows, cols = calibration.parse_section(header["BIASSEC"])
    corrected = raw[rows, cols] - np.median(raw[rows, cols], axis=1)[:, None]
    assert abs(np.median(corrected)) < 0.5


def _saao():
    with fits.open(real_data("images", "saao_raw", "a8280271.fits")) as hdul:
        raw = hdul[0].data.astype(float)
        header = hdul[0].header
    cam = Camera(
        name="STE3",
        shape=raw.shape,
        gain=header["GAIN"],
        read_noise=header["RDNOISE"],
        dark_current=0.0,
        pixel_scale=0.6,
        saturation=60000,
        bias_level=0,
        biassec=header["BIASSEC"],
        trimsec=header["TRIMSEC"],
    )
    return raw, cam, float(header["EXPTIME"])


def test_undersampled_star_cores_are_spared_and_hits_still_found():
    """A 2″/px camera: 1.3 px FWHM stars are as sharp as cosmic rays to L.A.Cosmic."""
    import astroscrappy

    from telescope_assets.simulate.optics import family
    from telescope_assets.simulate.render import Conditions, Source, render_sources

    rng = np.random.default_rng(5)
    shape = (300, 300)
    cam = Camera(name="t", shape=shape, gain=1.0, read_noise=5.0, pixel_scale=2.0, saturation=1e9)
    stars = Source(rng.uniform(10, 290, 80), rng.uniform(10, 290, 80), rng.uniform(2e3, 2e5, 80))
    psf = family("undersampled").psf
    light = render_sources(shape, [stars], 1.3, Conditions(psf=psf))
    image = rng.poisson(light + 200.0).astype(float) + rng.normal(0, 5.0, shape)
    hits = [(int(y), int(x)) for y, x in rng.integers(5, 295, (40, 2))]
    for y, x in hits:
        image[y, x] += rng.uniform(1500, 6000)
    zero, one = np.zeros(shape), np.ones(shape)
    cal = calibration.calibrate_frame(image, 1.0, cam, zero, zero, one)
    cr = (cal.mask & calibration.MASK_BITS["cosmic_ray"]) > 0
    cores = [(round(y), round(x)) for x, y in zip(stars.x, stars.y, strict=True)]
    # L.A.Cosmic alone (what calibrate_frame did before sparing) flags most bright cores.
    alone, _ = astroscrappy.detect_cosmics(
        cal.sci, inmask=np.zeros(shape, bool), gain=1.0, readnoise=5.0, satlevel=1e9,
        sigclip=5.0, objlim=8.0, niter=calibration.CR_ITERATIONS, sepmed=True,
    )  # fmt: skip
    assert np.mean([alone[y, x] for y, x in cores]) > 0.3
    assert np.mean([cr[y, x] for y, x in hits]) >= 0.95
    assert np.mean([cr[y, x] for y, x in cores]) <= 0.05


def test_group_peaks_are_scipys_maximum_positions():
    """The per-box peak search gives ``ndimage.maximum_position``'s answer, group by group."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    data = rng.normal(size=(400, 500))
    hit = np.zeros(data.shape, bool)
    for y, x in rng.integers(0, 395, (300, 2)):
        hit[y : y + rng.integers(1, 4), x : x + rng.integers(1, 6)] = True
    labels, n = ndimage.label(hit, structure=np.ones((3, 3)))
    expected = ndimage.maximum_position(data, labels, index=np.arange(1, n + 1))
    assert n > 200
    assert calibration._peaks(data, labels) == [tuple(map(int, p)) for p in expected]


def test_one_cosmic_ray_pass_flags_every_hit_of_a_converged_search_on_a_real_frame():
    """CR_ITERATIONS (one pass) against L.A.Cosmic run to convergence, real SAAO frame."""
    import astroscrappy
    from scipy import ndimage

    raw, cam, exptime = _saao()
    shape = calibration.overscan_and_trim(raw, cam).shape
    zero, one = np.zeros(shape), np.ones(shape)
    cal = calibration.calibrate_frame(raw, exptime, cam, zero, zero, one)
    ours = (cal.mask & calibration.MASK_BITS["cosmic_ray"]) > 0
    converged, _ = astroscrappy.detect_cosmics(
        cal.sci.astype(np.float32),
        inmask=(cal.mask & ~np.uint16(calibration.MASK_BITS["cosmic_ray"])) > 0,
        gain=1.0,
        readnoise=cam.read_noise,
        satlevel=cam.saturation * cam.gain,
        sigclip=5.0,
        objlim=8.0,
        niter=4,
        sepmed=True,
    )
    hits, n_hits = ndimage.label(converged, np.ones((3, 3)))
    assert n_hits == 29
    found = set(np.unique(hits[ours & converged])) - {0}
    assert len(found) == n_hits  # every hit
    assert (ours & converged).sum() >= 0.9 * converged.sum()  # 95 of its 104 pixels
    assert not (ours & ~converged).any()


def test_real_feder_biases_give_master_with_matching_read_noise():
    biases = [
        fits.getdata(real_data("images", "feder_bias", f"biastest{i}.fit")).astype(float)
        for i in range(1, 6)
    ]
    master = calibration.combine(np.stack(biases))
    assert np.median(master) == pytest.approx(35860, rel=0.002)
    pairwise = calibration.pairwise_read_noise(biases[0], biases[1])
    assert pairwise == pytest.approx(20.2, rel=0.05)
    # Each frame against the master of the other four: var = rn^2 (1 + 1/4) if the
    # master carries read noise / sqrt(4), as it should.
    loo = []
    for i, frame in enumerate(biases):
        others = calibration.combine(np.stack(biases[:i] + biases[i + 1 :]))
        loo.append(mad_std(frame - others) / np.sqrt(1 + 1 / 4))
    assert np.mean(loo) == pytest.approx(pairwise, rel=0.05)
    # The master's own noise is read noise / sqrt(n): compare two independent halves.
    half = calibration.pairwise_read_noise(
        np.mean(biases[:2], axis=0), np.mean(biases[2:4], axis=0)
    )
    assert half == pytest.approx(pairwise / np.sqrt(2), rel=0.1)


def test_combine_rejects_outliers_and_validates_input():
    rng = np.random.default_rng(1)
    stack = rng.normal(100, 5, (7, 50, 50))
    stack[3, 10, 10] = 10_000  # a cosmic ray in one frame
    out = calibration.combine(stack)
    assert out[10, 10] == pytest.approx(100, abs=10)
    with pytest.raises(ValueError, match="at least 2"):
        calibration.combine(stack[:1])


def test_master_flat_has_unit_mean_and_rejects_empty_flats(sutherland):
    assert sutherland["flat"].mean() == pytest.approx(1.0, abs=1e-12)
    cam = sutherland["cam"]
    dark_raw = np.full(cam.shape, 0, dtype=np.float32)
    with pytest.raises(ValueError, match="non-positive median"):
        calibration.make_master_flat(
            [dark_raw, dark_raw], [1.0, 1.0], cam, sutherland["bias"] + 1e6, sutherland["dark"]
        )


def test_reduced_frames_get_errors_from_their_own_sky():
    """A frame reduced elsewhere (the ESO image of SExtractor's tests): the error plane's
    sky level agrees with SExtractor's RMS map, whether the sky was left in or not."""
    image, back, rms = (real_image("images", "sep", n) for n in ("image.fits", "back.fits",
                                                                  "rms.fits"))  # fmt: skip
    camera = Camera(name="emmi", shape=(256, 256), gain=1.0, read_noise=5.0,
                    pixel_scale=0.35, saturation=60000)  # fmt: skip
    cal = calibration.calibrate_reduced(image, camera)
    np.testing.assert_array_equal(cal.sci, image.astype(np.float32))
    assert cal.n_saturated == int((image >= 60000).sum()) > 0
    assert (cal.mask[image >= 60000] & calibration.MASK_BITS["saturated"]).all()
    # Sky left in, or subtracted: the same errors and the same hits (a few: the image is
    # the sum of three exposures; without the pedestal the sky-subtracted frame had 1483).
    # No saturation here, which a shifted frame would cross elsewhere.
    camera = dataclasses.replace(camera, saturation=1e9)
    sky = np.abs(image - back) < rms
    hits = []
    for frame in (image, image - np.median(back)):
        cal = calibration.calibrate_reduced(frame, camera)
        ratio = np.median(cal.err[sky]) / np.median(rms)
        print(f"error / SExtractor RMS on sky pixels: {ratio:.3f}; "
              f"{cal.n_cosmic_ray} cosmic-ray pixels")  # fmt: skip
        assert 0.95 < ratio < 1.10
        hits.append(cal.n_cosmic_ray)
    assert hits[0] == hits[1] < 20


def test_reduced_frames_convert_to_electrons_and_flag_hits():
    rng = np.random.default_rng(4)
    camera = Camera(name="c", shape=(120, 130), gain=2.0, read_noise=8.0, pixel_scale=1.0,
                    saturation=65535, trimsec="[3:130,1:120]")  # fmt: skip
    sky_e = 400.0
    electrons = rng.normal(sky_e, np.sqrt(sky_e + 8.0**2), size=(120, 130))
    electrons[60, 60] += 20000.0  # a one-pixel hit
    cal = calibration.calibrate_reduced(electrons / camera.gain, camera)
    assert cal.sci.shape == (120, 128)
    np.testing.assert_allclose(cal.sci, electrons[:, 2:], rtol=1e-6)
    assert np.median(cal.err) == pytest.approx(np.sqrt(sky_e + 64.0), rel=0.05)
    assert cal.mask[60, 58] & calibration.MASK_BITS["cosmic_ray"]
    assert cal.n_cosmic_ray < 10
    with pytest.raises(ValueError, match="camera 'c' is"):
        calibration.calibrate_reduced(electrons[:100], camera)
