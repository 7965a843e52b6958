"""The declared schema of every per-partition table (manifest) in the lake.

A manifest is written through :meth:`telescope_assets.lake.Lake.write_manifest`, which
lays the table out in its declared columns and types: a partition with nothing in it
(no alerts tonight) still has every column, so a reader needs no guard, and two
partitions of one asset always have the same schema. A column the declaration lacks is
kept after the declared ones and raises :class:`UndeclaredColumnWarning` (an error in the
tests): declare it here. Types are Arrow's; text is ``large_string``, as pandas writes it.
"""

from __future__ import annotations

import warnings

import pyarrow as pa

from telescope_assets.ml.labels import FLAG_NAMES, TYPE_CLASSES

__all__ = ["MANIFEST_SCHEMAS", "UndeclaredColumnWarning", "conform", "empty"]

TEXT = pa.large_string()


class UndeclaredColumnWarning(UserWarning):
    """A manifest was written with a column its declared schema lacks."""


#: The columns of a frame's difference candidates (``transient_candidates``), which
#: ``alerts`` extends.
_CANDIDATE_FIELDS = [
    ("x", pa.float64()),
    ("y", pa.float64()),
    ("flux", pa.float64()),
    ("flux_err", pa.float64()),
    ("snr", pa.float64()),
    ("flux_ap", pa.float64()),
    ("fluxerr_ap", pa.float64()),
    ("n_masked", pa.int64()),
    ("candidate_id", TEXT),
    ("frame_id", TEXT),
    ("site", TEXT),
    ("night", TEXT),
    ("mjd", pa.float64()),
    ("filter", TEXT),
    ("field", TEXT),
    ("ra", pa.float64()),
    ("dec", pa.float64()),
    ("mag", pa.float64()),
    ("mag_err", pa.float64()),
    ("fwhm_px", pa.float64()),
    ("zero_point", pa.float64()),
    ("reference_id", TEXT),
    ("star_fraction", pa.float64()),
    ("p_real", pa.float32()),
    ("p_cosmic_ray", pa.float32()),
    ("p_bad_pixel", pa.float32()),
    ("p_satellite_trail", pa.float32()),
    ("p_bad_subtraction", pa.float32()),
    ("rb_class", TEXT),
    ("rb_model", TEXT),
    ("provisional", pa.bool_()),
]

#: Columns of a per-frame failure row (``tasks.FAILED_COLUMNS``): the step (and stage)
#: that failed, why, and the end of its traceback.
_FAILURE_FIELDS = [("step", TEXT), ("traceback", TEXT)]

_FIELDS: dict[str, list[tuple[str, pa.DataType]]] = {
    "raw_frames": [
        ("frame_id", TEXT),
        ("site", TEXT),
        ("night", TEXT),
        ("frame_type", TEXT),
        ("date_obs", TEXT),
        ("exptime", pa.float64()),
        ("filter", TEXT),
        ("object", TEXT),
        ("ra_deg", pa.float64()),
        ("dec_deg", pa.float64()),
        ("ny", pa.int64()),
        ("nx", pa.int64()),
        ("bitpix", pa.int64()),
        ("size_bytes", pa.int64()),
        ("pixel_id", TEXT),
        ("container", TEXT),
        ("incoming_path", TEXT),
        ("received_at", TEXT),
    ],
    "calibrated_frames": [
        ("frame_id", TEXT),
        ("site", TEXT),
        ("night", TEXT),
        ("filter", TEXT),
        ("date_obs", TEXT),
        ("exptime", pa.float64()),
        ("object", TEXT),
        ("status", TEXT),
        ("path", TEXT),
        ("provkey", TEXT),
        ("bias_id", TEXT),
        ("dark_id", TEXT),
        ("flat_id", TEXT),
        ("sky_median_e", pa.float64()),
        ("n_cosmic_ray", pa.int64()),
        ("n_saturated", pa.int64()),
        ("n_masked", pa.int64()),
        ("n_nan_unmasked", pa.int64()),
        ("seconds", pa.float64()),
        # A frame quarantined by calibration: why (science/frames.py REASONS), and detail.
        ("reason", TEXT),
        ("detail", TEXT),
    ],
    "source_catalogs": [
        ("frame_id", TEXT),
        ("site", TEXT),
        ("night", TEXT),
        ("status", TEXT),
        ("catalog_path", TEXT),
        ("provkey", TEXT),
        ("date_obs", TEXT),
        ("mjd", pa.float64()),
        ("filter", TEXT),
        ("object", TEXT),
        ("exptime", pa.float64()),
        ("airmass", pa.float64()),
        ("n_sources", pa.int64()),
        ("seeing_arcsec", pa.float64()),
        ("fwhm_px", pa.float64()),
        ("ellipticity", pa.float64()),
        ("background_e", pa.float64()),
        ("background_rms_e", pa.float64()),
        ("sky_mag", pa.float64()),
        ("zero_point", pa.float64()),
        ("zero_point_err", pa.float64()),
        ("zp_n_stars", pa.int64()),
        ("zp_scatter", pa.float64()),
        ("colour_term", pa.float64()),
        ("colour_pivot", pa.float64()),
        ("transparency", pa.float64()),
        ("aperture_radius_px", pa.float64()),
        ("aperture_correction", pa.float64()),
        ("n_apcorr_stars", pa.int64()),
        ("aperture_correction_measured", pa.float64()),
        ("psf_moffat_beta", pa.float64()),
        ("psf_alpha", pa.float64()),
        ("limiting_mag", pa.float64()),
        ("astrometric_rms_px", pa.float64()),
        ("astrometric_rms_arcsec", pa.float64()),
        ("n_astrometric_stars", pa.int64()),
        ("wcs_ok", pa.bool_()),
        ("sip_degree", pa.int64()),
        ("wcs_header", TEXT),
        ("reference_catalog", TEXT),
        ("thumbnail_path", TEXT),
        ("anomaly_input_path", TEXT),
        ("trail_candidates", pa.int64()),
        ("hot_columns", pa.int64()),
        ("quality_flags", TEXT),
        ("pipeline_version", TEXT),
        ("seconds", pa.float64()),
    ],
    "source_catalogs_failed": [
        ("frame_id", TEXT),
        ("night", TEXT),
        ("status", TEXT),
        ("step", TEXT),
        ("reason", TEXT),
        ("traceback", TEXT),
    ],
    "frame_quality": [
        ("frame_id", TEXT),
        ("filter", TEXT),
        ("quality_class", TEXT),
        ("cnn_class", pa.string()),
        ("p_good", pa.float64()),
        ("p_medium", pa.float64()),
        ("p_bad", pa.float64()),
        ("anomaly_score", pa.float64()),
        ("anomalous", pa.bool_()),
        ("seeing_arcsec", pa.float64()),
        ("transparency", pa.float64()),
        ("ellipticity", pa.float64()),
        ("background_e", pa.float64()),
        ("limiting_mag", pa.float64()),
        ("n_sources", pa.int64()),
        ("trail_candidates", pa.int64()),
        ("hot_columns", pa.int64()),
        ("quality_flags", TEXT),
        ("classical_flags", TEXT),
        ("cnn_flags", TEXT),
        ("flag_disagreements", TEXT),
        ("date_obs", TEXT),
        ("mjd", pa.float64()),
        ("object", TEXT),
        ("airmass", pa.float64()),
        ("sky_mag", pa.float64()),
        ("zero_point", pa.float64()),
        ("astrometric_rms_arcsec", pa.float64()),
        ("cnn_model", TEXT),
        ("anomaly_model", TEXT),
        # The CNN's probability of each flag.
        *((f"p_flag_{name}", pa.float32()) for name in FLAG_NAMES),
    ],
    "reference_images": [
        ("field", TEXT),
        ("filter", TEXT),
        ("reference_id", TEXT),
        ("status", TEXT),
        ("site", TEXT),
        ("path", TEXT),
        ("n_frames", pa.int64()),
        ("frames", TEXT),
        ("zero_point", pa.float64()),
        ("fwhm_px", pa.float64()),
        ("seeing_arcsec", pa.float64()),
        ("built_now", pa.bool_()),
        ("seconds", pa.float64()),
    ],
    "transient_candidates": _CANDIDATE_FIELDS,
    "transient_frames": [
        ("frame_id", TEXT),
        ("status", TEXT),
        ("site", TEXT),
        ("night", TEXT),
        ("reference_id", TEXT),
        ("provkey", TEXT),
        ("mjd", pa.float64()),
        ("filter", TEXT),
        ("object", TEXT),
        ("reason", TEXT),
        ("candidates_path", TEXT),
        ("cutouts_path", TEXT),
        ("n_candidates", pa.float64()),
        ("n_detections", pa.float64()),
        ("n_on_trails", pa.float64()),
        ("kernel_chi2", pa.float64()),
        ("kernel_stamps", pa.float64()),
        ("kernel_kind", TEXT),
        ("convolved", TEXT),
        ("photometric_scale", pa.float64()),
        ("difference_pull_std", pa.float64()),
        ("seconds", pa.float64()),
        *_FAILURE_FIELDS,
    ],
    "alerts": [
        *_CANDIDATE_FIELDS,
        ("alert_id", TEXT),
        ("object_id", TEXT),
        ("object_kind", TEXT),
        ("packet_path", TEXT),
    ],
    "moving_objects": [
        ("alert_id", TEXT),
        ("object_id", TEXT),
        ("frame_id", TEXT),
        ("site", TEXT),
        ("night", TEXT),
        ("mjd", pa.float64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("mag", pa.float64()),
        ("filter", TEXT),
        ("tracklet_id", TEXT),
        ("designation", TEXT),
        ("n_detections", pa.int64()),
        ("n_sites", pa.int64()),
        ("rate_arcsec_per_hour", pa.float64()),
        ("pa_deg", pa.float64()),
        ("rms_arcsec", pa.float64()),
    ],
    "transient_types": [
        ("alert_id", TEXT),
        ("object_id", TEXT),
        ("mjd", pa.float64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("type_class", TEXT),
        *((f"p_{name}", pa.float32()) for name in TYPE_CLASSES),
        ("type_source", TEXT),
        ("type_model", TEXT),
        ("host_sep_arcsec", pa.float64()),
        ("host_radius_arcsec", pa.float64()),
        ("star_mag", pa.float64()),
        ("n_points", pa.int64()),
        ("annotation_path", TEXT),
    ],
    "followup_requests": [
        ("request_id", TEXT),
        ("alert_id", TEXT),
        ("site", TEXT),
        ("priority", pa.int64()),
        ("object_id", TEXT),
        ("night", TEXT),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("filters", TEXT),
        ("exptime", TEXT),
        ("expected_mag", pa.float64()),
        ("window_start", TEXT),
        ("window_end", TEXT),
        ("min_airmass", pa.float64()),
        ("moon_separation_deg", pa.float64()),
        ("recent_transparency", pa.float64()),
        ("recent_seeing_arcsec", pa.float64()),
        ("limiting_mag", pa.float64()),
        ("science_priority", pa.float64()),
        ("type_class", TEXT),
        ("rate_mag_per_day", pa.float64()),
        ("rate_err", pa.float64()),
        ("predicted_fade_mjd", pa.float64()),
    ],
    "followup_refusals": [
        ("site", TEXT),
        ("night", TEXT),
        ("reason", TEXT),
        ("alert_id", TEXT),
    ],
}

#: Every manifest's declared Arrow schema, by asset (the folder under ``manifests/``).
MANIFEST_SCHEMAS: dict[str, pa.Schema] = {name: pa.schema(f) for name, f in _FIELDS.items()}


def empty(asset: str):
    """An empty table of ``asset``'s manifest, with its declared columns and dtypes."""
    return MANIFEST_SCHEMAS[asset].empty_table().to_pandas()


def conform(asset: str, df) -> pa.Table:
    """``df`` as an Arrow table of ``asset``'s declared schema.

    Declared columns come first, in their order and type (a missing one is all null);
    undeclared columns follow with the types Arrow infers, and a warning names them.
    """
    import pandas as pd

    schema = MANIFEST_SCHEMAS[asset]
    extra = [c for c in df.columns if c not in schema.names]
    if extra:
        warnings.warn(
            f"manifest {asset!r} written with undeclared columns {extra}: declare them in "
            "telescope_assets/manifests.py",
            UndeclaredColumnWarning,
            stacklevel=3,
        )
    missing = {name: pd.Series([None] * len(df), index=df.index, dtype=object)
               for name in schema.names if name not in df.columns}  # fmt: skip
    df = df.assign(**missing) if missing else df
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    for name in extra:
        table = table.append_column(name, pa.Array.from_pandas(df[name]))
    return table
