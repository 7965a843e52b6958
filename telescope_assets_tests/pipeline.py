"""One site × night through the frames-to-follow-up assets, as several test modules run it.

Shared by the transient tests (``defs/test_transients.py``) and the alert-publication
faults (``reliability/test_alert_publication.py``); not a test module itself.
"""

import dagster as dg

from telescope_assets.defs.catalogs.assets import frame_quality, source_catalogs
from telescope_assets.defs.followup.assets import followup_requests, moving_objects
from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.defs.models.assets import anomaly_model, frame_quality_model, real_bogus_model
from telescope_assets.defs.transients.assets import alerts, reference_images, transient_candidates
from telescope_assets_tests.conftest import TWO_NIGHTS

NIGHTS = TWO_NIGHTS
SITE = "tololo"
ASSETS = [
    raw_frames,
    calibration_masters,
    calibrated_frames,
    source_catalogs,
    frame_quality,
    reference_images,
    transient_candidates,
    alerts,
    moving_objects,
    followup_requests,
]
MODELS = [m.to_source_asset() for m in (anomaly_model, frame_quality_model, real_bogus_model)]
# The test champion is a tiny network: every candidate becomes an alert, so that the
# mechanics (ids, packets, follow-up) are exercised; accuracy is measured in bench/.
EVERYTHING = {
    "ops": {
        "alerts": {
            "config": {"min_real_score": 0.0, "provisional_min_real_score": 0.0, "min_snr": 5.0}
        }
    }
}


def run_partition(resources, night, instance):
    key = dg.MultiPartitionKey({"site": SITE, "night": night})
    return dg.materialize(
        [*ASSETS, *MODELS],
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config=EVERYTHING,
    )
