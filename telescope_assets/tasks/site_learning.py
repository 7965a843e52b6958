"""Each site learns its own bogus: real/bogus examples from a site's own nights.

A network model trained on simulated triplets has learned the simulator's optics; on a
camera it has never seen (a 0.3″/px one, say) it passes bright-star residuals as real and
calls bright transients trails. So each site gets examples from its own frames:

* **bogus**: every candidate of the site's difference images of these nights (what its
  optics, its detector and its reference leave behind), except those on catalogued
  variable stars. A genuine unknown transient among them is label noise at the rate of
  the sky's transients (two in 26 frames of the demo, against hundreds of candidates).
* **real**: fake point sources drawn with each frame's *own* PSF
  (:func:`science.injection.empirical_psf`), put into its calibrated frame at random
  places and on its extended sources that are no catalogued star (hosts), then the
  frame's whole subtraction and detection run again exactly as in production
  (:func:`tasks.transients.difference_one` on a scratch lake); the candidates that
  recover a fake, with their cutouts, are real.

Frames, not candidates, are split between training and evaluation (a quarter held out,
by a hash of the frame id), so no frame's residuals are on both sides. The arrays have
the network training set's layout (``x``: raw science/reference/difference cutouts, ``y``:
the five classes), plus ``snr`` and ``frame_id``.
"""

from __future__ import annotations

import hashlib
import io
import tempfile

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import Site

__all__ = [
    "HELD_OUT_FRACTION",
    "MIN_LEARN_FRAMES",
    "bogus_examples",
    "held_out_frames",
    "learning_nights",
    "network_examples",
    "real_examples",
    "save_site_examples",
    "site_examples",
    "sites_due",
    "subtracted_frames",
]

#: Share of a site's frames whose examples are held out for the gate.
HELD_OUT_FRACTION = 0.25
#: Fakes per frame and pass, and the share of them put on extended sources (hosts).
#: None on hosts for now: with 30 % there, a beta = 2 site's model passed the galaxy
#: residuals of a thin night as real (4.0 false alerts per 10 frames against the
#: network's 2.7; 2.0 with none), because its first nights' candidates held no galaxy
#: residual to learn as bogus (2026-12-07). The placing is kept and tested.
FAKES_PER_PASS = 20
HOSTED_SHARE = 0.0
#: Difference S/N of the fakes (uniform): the range alerts are decided in.
FAKE_SNR = (6.0, 40.0)
#: Subtracted frames a site needs before it learns: two held out for the gate, two or
#: more to learn from (the gate then asks for 60 recovered fakes on the held-out ones).
MIN_LEARN_FRAMES = 4


def learning_nights(lake: Lake, site: str) -> list[str]:
    """The nights a site would learn from now, or ``[]`` while it has too few frames.

    Every night with subtracted frames, once they number :data:`MIN_LEARN_FRAMES`; the
    list (not a count) names a learning run, so a new night asks for a new one.
    """
    nights, n_frames = [], 0
    for night in lake.manifest_nights("transient_frames", site):
        frames = lake.read_parquet(lake.manifest("transient_frames", site, night))
        done = int((frames.status == "subtracted").sum()) if "status" in frames else 0
        if done:
            nights.append(night)
            n_frames += done
    return nights if n_frames >= MIN_LEARN_FRAMES else []


def sites_due(lake: Lake, site_names, tracking_uri: str) -> list[tuple[str, list[str]]]:
    """Provisional sites with enough subtracted frames, and the nights each learns from.

    Provisional: scoring with the network's model, no champion of its own yet (what the
    ``site_learning`` sensor asks a run for).
    """
    from telescope_assets.tasks.site_models import scoring_model

    due = []
    for site in site_names:
        nights = learning_nights(lake, site)
        if not nights:
            continue
        model = scoring_model(tracking_uri, site)
        if model is not None and model["provisional"]:
            due.append((site, nights))
    return due


def subtracted_frames(lake: Lake, site: str, nights: list[str]) -> list[tuple[dict, dict]]:
    """``(catalog row, reference row)`` of every subtracted frame of these nights."""
    out = []
    for night in nights:
        frames_rel = lake.manifest("transient_frames", site, night)
        if not lake.exists(frames_rel):
            continue
        frames = lake.read_parquet(frames_rel)
        if not len(frames) or "status" not in frames:
            continue
        cats = lake.rows_by_frame(lake.manifest("source_catalogs", site, night))
        refs = lake.read_parquet(lake.manifest("reference_images", site, night))
        by_id = {r["reference_id"]: r for r in refs.to_dict("records")}
        for fr in frames[frames.status == "subtracted"].itertuples():
            if fr.frame_id in cats and fr.reference_id in by_id:
                out.append((cats[fr.frame_id], by_id[fr.reference_id]))
    return out


def _rank(frame_id: str) -> str:
    return hashlib.sha256(frame_id.encode()).hexdigest()


def held_out_frames(frame_ids) -> set[str]:
    """The frames whose examples are held out for the gate.

    A quarter of them (at least two of four or more): those first in the order of a hash
    of their ids, so the same frames always give the same split.
    """
    unique = sorted(set(frame_ids), key=_rank)
    n = int(np.ceil(HELD_OUT_FRACTION * len(unique)))
    if len(unique) >= 4:
        n = max(n, 2)
    return set(unique[:n])


def _stamps(lake: Lake, rel: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(lake.read_bytes(rel)), allow_pickle=False) as z:
        return dict(zip(z["candidate_id"], z["cutouts"], strict=True))


def bogus_examples(lake: Lake, site: Site, nights: list[str]) -> dict[str, np.ndarray]:
    """The candidates of these nights' differences, as bogus examples (module docstring).

    Each is labelled with the bogus class the scoring model found most likely (the
    classes share one output; only real versus bogus is judged).
    """
    from telescope_assets.ml.labels import RB_CLASSES
    from telescope_assets.tasks.alerts import MATCH_RADIUS_ARCSEC, _sep_arcsec
    from telescope_assets.tasks.catalogs import load_reference

    xs, ys, snrs, fids = [], [], [], []
    bogus_cols = [f"p_{c}" for c in RB_CLASSES[1:]]
    for night in nights:
        rel = lake.manifest("transient_candidates", site.name, night)
        if not lake.exists(rel):
            continue
        cands = lake.read_parquet(rel)
        if not len(cands):
            continue
        for (fid, field), group in cands.groupby(["frame_id", "field"], sort=True):
            refcat, _ = load_reference(lake, site, field)
            var = refcat[refcat.variable.astype(bool)] if _has_variables(refcat) else None
            if var is not None and len(var):
                near = [
                    _sep_arcsec(r.ra, r.dec, var.ra, var.dec).min() < MATCH_RADIUS_ARCSEC
                    for r in group.itertuples()
                ]
                group = group[~np.asarray(near, bool)]
            stamps = _stamps(lake, lake.candidates(site.name, night, fid, "npz"))
            for row in group.itertuples():
                xs.append(stamps[row.candidate_id])
                probs = np.asarray([getattr(row, c, 0.0) for c in bogus_cols], float)
                ys.append(1 + int(np.nan_to_num(probs).argmax()))
                snrs.append(row.snr)
                fids.append(fid)
    return _arrays(xs, ys, snrs, fids)


def _has_variables(refcat: pd.DataFrame | None) -> bool:
    return refcat is not None and len(refcat) > 0 and "variable" in refcat


def _arrays(xs, ys, snrs, fids) -> dict[str, np.ndarray]:
    """Examples as the models read them: each cutout normalised as in scoring."""
    from telescope_assets.science.subtraction import STAMP
    from telescope_assets.science.thumbnails import normalise_stack

    x = normalise_stack(np.asarray(xs).reshape(-1, 3, STAMP, STAMP)) if len(xs) else xs
    return {
        "x": np.asarray(x, np.float32).reshape(-1, 3, STAMP, STAMP),
        "y": np.asarray(ys, np.int64),
        "snr": np.asarray(snrs, np.float32),
        "frame_id": np.asarray(fids, str),
    }


def _fake_places(row: dict, cat: pd.DataFrame, mask, shape, n: int, rng) -> tuple:
    """``n`` positions 40 px from the edges on unmasked sky, a share on extended sources."""
    fwhm = float(row["fwhm_px"])
    n_host = round(HOSTED_SHARE * n)
    # Hosts: broader than the PSF and not a reference-catalogue star (a bright star's
    # wings make it look extended; fakes on stars taught a model that a star's residual
    # is real: 10 false alerts per 10 frames on a beta = 2 camera, 2026-12-07).
    star = cat.ref_id.fillna("").astype(str) != "" if "ref_id" in cat else False
    extended = cat[(cat["flags"] == 0) & (cat.snr > 10) & (cat.fwhm > 1.5 * fwhm) & ~star]
    x = rng.uniform(40, shape[1] - 40, n)
    y = rng.uniform(40, shape[0] - 40, n)
    if len(extended) and n_host:
        pick = extended.iloc[rng.integers(0, len(extended), n_host)]
        r = 0.5 * pick.fwhm.to_numpy() * np.sqrt(rng.uniform(0, 1, n_host))
        phi = rng.uniform(0, 2 * np.pi, n_host)
        x[:n_host] = np.clip(pick.x.to_numpy() + r * np.cos(phi), 40, shape[1] - 41)
        y[:n_host] = np.clip(pick.y.to_numpy() + r * np.sin(phi), 40, shape[0] - 41)
    ok = mask[np.round(y).astype(int), np.round(x).astype(int)] == 0
    return x[ok], y[ok]


def real_examples(
    lake: Lake,
    site: Site,
    frames: list[tuple[dict, dict]],
    passes: int = 2,
    seed: int = 0,
    progress=None,
) -> tuple[dict[str, np.ndarray], int]:
    """Fakes with each frame's own PSF, recovered through its whole subtraction.

    ``passes`` independent sets of :data:`FAKES_PER_PASS` fakes per frame. A fake's flux
    gives it a difference S/N drawn from :data:`FAKE_SNR` (background-limited optimal S/N
    with the frame's PSF, the reference's noise included); it is real when a candidate
    lies within max(1.5 px, 0.3 FWHM) of it. Returns the examples and the number of
    fakes injected (frames too poor in stars for a PSF give none).
    """
    with tempfile.TemporaryDirectory(prefix="site-fakes-") as tmp:
        return _real_examples(lake, Lake(tmp), site, frames, passes, seed, progress)


def _real_examples(lake, scratch, site, frames, passes, seed, progress):
    rng = np.random.default_rng(seed)
    stamps, snrs, fids = [], [], []
    n_injected = 0
    for row, ref in frames:
        found, snr, n = _frame_fakes(lake, scratch, site, row, ref, passes, rng)
        stamps += found
        snrs += snr
        fids += [row["frame_id"]] * len(found)
        n_injected += n
        if progress is not None:
            progress(row["frame_id"])
    return _arrays(stamps, [0] * len(stamps), snrs, fids), n_injected


def _frame_fakes(lake, scratch, site, row, ref, passes, rng) -> tuple[list, list, int]:
    """``passes`` sets of fakes into one frame, each through its subtraction again.

    The frame is read and its PSF measured once. Returns the cutouts and injected S/N of
    the recovered fakes, and how many were injected.
    """
    from telescope_assets.science import injection
    from telescope_assets.tasks.transients import _kernel_stars

    cal = Lake.calibrated(site.name, row["night"], row["frame_id"])
    cat = lake.read_parquet(row["catalog_path"])
    for rel in (row["catalog_path"], ref["path"]):
        if not scratch.exists(rel):
            scratch.write_bytes(rel, lake.read_bytes(rel))
    found, found_snr, n_injected = [], [], 0
    with lake.read_fits(cal) as hdul:
        sci = hdul["SCI"].data.astype(np.float64)
        err = hdul["ERR"].data.astype(np.float64)
        mask = hdul["MASK"].data
        sky = float(np.median(sci[mask == 0]))
        half = int(np.clip(np.ceil(4 * row["fwhm_px"]), 7, 31))
        try:
            psf = injection.empirical_psf(sci - sky, mask, _kernel_stars(cat, sci.shape), half)
        except ValueError:
            return [], [], 0  # too few stars for a PSF: no real examples from this frame
        noise = row["background_rms_e"] * np.sqrt(injection.psf_noise_area(psf))
        noise *= np.sqrt(1 + 1 / ref["n_frames"])
        for _ in range(passes):
            x, y = _fake_places(row, cat, mask, sci.shape, FAKES_PER_PASS, rng)
            snr = rng.uniform(*FAKE_SNR, len(x))
            hdul["SCI"].data, hdul["ERR"].data = (
                a.astype(np.float32)
                for a in injection.add_point_sources(sci, err, psf, x, y, snr * noise, rng)
            )
            scratch.write_fits(cal, hdul)
            stamps, recovered = _recovered(scratch, site, row, ref, x, y)
            found += stamps
            found_snr += [float(snr[i]) for i in recovered]
            n_injected += len(x)
    return found, found_snr, n_injected


def _recovered(scratch, site, row, ref, x, y) -> tuple[list, list[int]]:
    """Run the frame's subtraction and detection on the scratch lake.

    Returns the cutouts of the candidates within max(1.5 px, 0.3 FWHM) of a fake, and
    which fakes they are.
    """
    from telescope_assets.tasks.transients import difference_one

    res = difference_one(row, scratch, site, ref)
    if res["status"] != "subtracted":
        return [], []
    cands = scratch.read_parquet(res["candidates_path"])
    if not len(cands):
        return [], []
    cutouts = _stamps(scratch, res["cutouts_path"])
    radius = max(1.5, 0.3 * row["fwhm_px"])
    stamps, which = [], []
    for i in range(len(x)):
        d = np.hypot(cands.x.to_numpy() - x[i], cands.y.to_numpy() - y[i])
        j = int(np.argmin(d))
        if d[j] < radius:
            stamps.append(cutouts[cands.candidate_id.iloc[j]])
            which.append(i)
    return stamps, which


def site_examples(
    lake: Lake, site: Site, nights: list[str], passes: int = 2, seed: int = 0, progress=None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """``(train, evaluation, counts)``: a site's own real and bogus examples, split by frame."""
    frames = subtracted_frames(lake, site.name, nights)
    real, n_injected = real_examples(
        lake, site, frames, passes=passes, seed=seed, progress=progress
    )
    bogus = bogus_examples(lake, site, nights)
    both = {k: np.concatenate([real[k], bogus[k]]) for k in real}
    held = held_out_frames(row["frame_id"] for row, _ in frames)
    out = np.isin(both["frame_id"], list(held))
    counts = {
        "frames": len(frames),
        "fakes_injected": n_injected,
        "fakes_recovered": len(real["y"]),
        "bogus_candidates": len(bogus["y"]),
    }
    return {k: v[~out] for k, v in both.items()}, {k: v[out] for k, v in both.items()}, counts


def save_site_examples(lake: Lake, name: str, train: dict, evaluation: dict) -> None:
    """A site's examples into the lake, as ``training/<name>/{train,eval}.npz``."""
    from telescope_assets.tasks.models import save_arrays

    save_arrays(lake, lake.training(name, "train"), train)
    save_arrays(lake, lake.training(name, "eval"), evaluation)


def network_examples(lake: Lake) -> dict[str, dict | None]:
    """The network's real/bogus training and evaluation sets (None where not made yet)."""
    from telescope_assets.tasks.models import load_arrays

    rels = {part: lake.training("real_bogus", part) for part in ("train", "eval")}
    return {
        part: load_arrays(lake, rel) if lake.exists(rel) else None for part, rel in rels.items()
    }
