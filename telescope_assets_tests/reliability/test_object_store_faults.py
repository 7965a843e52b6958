"""The object store down, refusing our keys, or cut off mid-write (a real S3 protocol server).

moto's server runs in its own process with request signing enforced (IAM on), so wrong
keys are refused the way AWS refuses them.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.ingest import ingest
from telescope_assets.lake import Lake
from telescope_assets.resources import LakeResource
from telescope_assets_tests.conftest import NIGHT

pytestmark = pytest.mark.services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_with_auth():
    """An S3 server that checks signatures; yields (endpoint, access key id, secret)."""
    import boto3

    port = _free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4")  # setting it up, then auth on
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
    setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **setup)
    iam.create_user(UserName="pipeline")
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    iam.put_user_policy(
        UserName="pipeline",
        PolicyName="all",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
    )
    key = iam.create_access_key(UserName="pipeline")["AccessKey"]
    boto3.client(
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        **setup,
    ).create_bucket(Bucket="lake")
    yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def aws_env(monkeypatch, s3_with_auth):
    """Credentials in the environment only, as production gives them; caches emptied."""
    import s3fs

    _, key_id, secret = s3_with_auth
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()


def test_a_store_that_is_down_fails_in_seconds_without_a_retry_storm():
    """A listener that drops every connection: count how often we knock."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    knocks = []

    def drop_all():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            knocks.append(time.monotonic())
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    lake = Lake(
        "s3://lake/down",
        {"key": "k", "secret": "SECRET-down-1", "client_kwargs": {"endpoint_url": endpoint}},
    )
    start = time.monotonic()
    with pytest.raises(Exception, match=endpoint) as caught:
        lake.write_bytes("raw/x.fits", b"abc")
    elapsed = time.monotonic() - start
    listener.close()
    assert elapsed < 20, f"{elapsed:.1f} s before giving up"  # was about 60 s
    assert len(knocks) <= 24, f"{len(knocks)} connections for one write"  # was 70
    assert "SECRET-down-1" not in str(caught.value)


def _digest_text(instance, run_id, log_dir: Path) -> str:
    """Everything a run left for people to read: events, tags, config and step logs."""
    from dagster._serdes import serialize_value

    run = instance.get_run_by_id(run_id)
    parts = [serialize_value(e) for e in instance.all_logs(run_id)]
    parts += [json.dumps(run.tags), json.dumps(run.run_config, default=str)]
    parts += [p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file()]
    return "\n".join(parts)


def test_wrong_keys_fail_clearly_and_no_secret_reaches_logs_events_or_metadata(
    s3_with_auth, aws_env, resources, registry, tmp_path, caplog
):
    endpoint, _, secret = s3_with_auth
    lake_resource = LakeResource(root="s3://lake/run", s3_endpoint_url=endpoint)
    ingest(resources["incoming"].get(), lake_resource.get(), registry, max_files=10_000)
    resources = {**resources, "lake_resource": lake_resource}
    key = dg.MultiPartitionKey({"site": "tololo", "night": NIGHT})
    overrides = {
        "compute_logs": {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(tmp_path / "logs")},
        }
    }
    wrong = "WRONG-secret-0123456789"
    with dg.instance_for_test(overrides=overrides) as instance:
        good = dg.materialize(
            [raw_frames, calibration_masters, calibrated_frames],
            partition_key=key,
            resources=resources,
            instance=instance,
        )
        assert good.success
        aws_env.setenv("AWS_SECRET_ACCESS_KEY", wrong)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        bad = dg.materialize(
            [raw_frames],
            partition_key=key,
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not bad.success
        (failure,) = [e for e in bad.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        message = failure.step_failure_data.error.to_string()
        assert "refused access" in message  # says what is wrong and what to check
        assert "AWS_SECRET_ACCESS_KEY" in message
        text = _digest_text(instance, good.run_id, tmp_path / "logs")
        text += _digest_text(instance, bad.run_id, tmp_path / "logs")
    text += caplog.text
    assert "tololo" in text  # the search reads real run output...
    assert secret not in text  # ...which never holds a secret, good or wrong
    assert wrong not in text


WRITE_BIG = """
import sys
from telescope_assets.lake import Lake
lake = Lake("s3://lake/cut", {"client_kwargs": {"endpoint_url": sys.argv[1]}})
print("writing", flush=True)
lake.write_bytes("calibrated/big.fits", bytes(256 << 20))
print("done", flush=True)
"""


def test_a_write_killed_midway_leaves_no_object_at_its_key(s3_with_auth, aws_env):
    endpoint, _, _ = s3_with_auth
    lake = Lake("s3://lake/cut", {"client_kwargs": {"endpoint_url": endpoint}})
    lake.write_bytes("calibrated/big.fits", b"the previous version")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITE_BIG, endpoint], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(1.0)
    assert proc.poll() is None, "the write finished before it could be cut off"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert lake.read_bytes("calibrated/big.fits") == b"the previous version"
    assert lake.list("calibrated") == ["calibrated/big.fits"]
