"""The lake and the incoming store on a real S3 protocol server (moto's, in-process).

The end-to-end path on S3 runs in test_acceptance.py; these are the store's own
promises, checked in seconds: atomic writes leave nothing behind, listings are fresh
(s3fs caches them), and caches keyed by a store work with nested S3 options.
"""

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from telescope_assets.lake import Lake, Store

KEYS = {"key": "telescope", "secret": "telescope-local"}


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint):
    import uuid

    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["key"],
        aws_secret_access_key=KEYS["secret"],
    ).create_bucket(Bucket=bucket)
    options = {**KEYS, "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    return Lake(f"s3://{bucket}/prefix", options)


def test_writes_are_whole_and_leave_no_temporary_objects(s3_lake):
    s3_lake.write_bytes("raw/a/2026-03-18/x.fits", b"abc" * 1000)
    s3_lake.write_json("ingest/batches/b1.json", {"n": 1})
    df = pd.DataFrame({"frame_id": ["x", "y"], "v": [1.5, 2.5]})
    s3_lake.write_parquet("manifests/m/a/2026-03-18.parquet", df)
    hdu = fits.PrimaryHDU(np.arange(12, dtype=np.float32).reshape(3, 4))
    s3_lake.write_fits("calibrated/a/2026-03-18/x.fits", fits.HDUList([hdu]))

    assert s3_lake.read_bytes("raw/a/2026-03-18/x.fits") == b"abc" * 1000
    assert s3_lake.read_json("ingest/batches/b1.json") == {"n": 1}
    pd.testing.assert_frame_equal(s3_lake.read_parquet("manifests/m/a/2026-03-18.parquet"), df)
    with s3_lake.read_fits("calibrated/a/2026-03-18/x.fits") as hdul:
        assert hdul[0].data.sum() == 66
    everything = s3_lake.fs.find(s3_lake.root)
    assert len(everything) == 4
    assert not [p for p in everything if "/.tmp-" in p]


def test_listings_see_objects_written_since_the_last_listing(s3_lake):
    incoming = Store(s3_lake.url, s3_lake.storage_options)
    assert incoming.list("site", recursive=True) == []
    incoming.write_bytes("site/one.fits", b"1")
    assert incoming.list("site", recursive=True) == ["site/one.fits"]
    # Written behind this store's back (another uploader): still seen.
    other = Store(s3_lake.url, s3_lake.storage_options)
    other.write_bytes("site/two.fits", b"2")
    assert incoming.list("site", recursive=True) == ["site/one.fits", "site/two.fits"]
    assert incoming.list_dirs("") == ["site"]
    assert incoming.modified("site/two.fits") is not None


def test_store_key_round_trips_nested_s3_options(s3_lake):
    # The calibration and reference-catalogue caches are keyed by it: a tuple of a dict
    # (client_kwargs) is unhashable, and a str() of it is not a dict any more.
    key = s3_lake.key
    assert hash(key)
    again = Lake.from_key(key)
    assert again.storage_options == s3_lake.storage_options
    s3_lake.write_bytes("refcat/F.parquet", b"x")
    assert again.read_bytes("refcat/F.parquet") == b"x"
