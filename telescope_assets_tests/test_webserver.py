"""The Dagster webserver for viewers: ``--read-only`` refuses every mutation."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture
def read_only_webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'storage'}\ntelemetry:\n  enabled: false\n"
    )
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home))
    webserver = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [
            str(webserver),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(ROOT / "workspace.yaml"),
            "--read-only",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "dagster-webserver did not start: " + proc.stderr.read().decode()[-2000:]
                    ) from None
                time.sleep(1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


def test_read_only_webserver_shows_assets_but_refuses_launches(read_only_webserver):
    port = read_only_webserver
    # Viewers can look: the code location and its assets load.
    nodes = _graphql(port, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
    keys = {n["assetKey"]["path"][-1] for n in nodes}
    assert {"raw_frames", "alerts", "nightly_report"} <= keys
    # ... but not launch a run,
    launch = _graphql(
        port,
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
             __typename ... on UnauthorizedError { message } } }""",
        {
            "p": {
                "selector": {
                    "repositoryLocationName": "telescope_assets",
                    "repositoryName": "__repository__",
                    "jobName": "nightly_job",
                },
                "executionMetadata": {
                    "tags": [{"key": "dagster/partition", "value": "2026-03-18"}]
                },
            }
        },
    )
    assert launch["data"]["launchRun"]["__typename"] == "UnauthorizedError"
    # ... nor a backfill,
    backfill = _graphql(
        port,
        """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
             __typename } }""",
        {"p": {"partitionNames": ["2026-03-18"], "assetSelection": [{"path": ["light_curves"]}]}},
    )
    assert backfill["data"]["launchPartitionBackfill"]["__typename"] == "UnauthorizedError"
    # ... nor turn a sensor on.
    sensor = _graphql(
        port,
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }""",
        {
            "s": {
                "repositoryLocationName": "telescope_assets",
                "repositoryName": "__repository__",
                "sensorName": "new_frames",
            }
        },
    )
    assert sensor["data"]["startSensor"]["__typename"] == "UnauthorizedError"
