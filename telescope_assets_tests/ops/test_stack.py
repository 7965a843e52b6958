"""``telescope-stack``'s refusals and state, without starting services (that is test_acceptance)."""

import socket

import pytest

from telescope_assets.ops import stack as stack_cli
from telescope_assets.ops.stack import Stack, StackConfig


def test_up_refuses_a_taken_port_and_says_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(StackConfig(state=tmp_path, mlflow_port=port))
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is taken.*choose other"):
            stack.up(progress=lambda _msg: None)
    assert stack.pids() == {}  # nothing was started


def test_status_without_a_stack_fails_and_down_is_harmless(tmp_path, capsys):
    assert stack_cli.main(["status", "--state", str(tmp_path)]) == 1
    assert "no stack started" in capsys.readouterr().out
    assert stack_cli.main(["down", "--state", str(tmp_path)]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_environment_points_every_client_at_the_stack(tmp_path):
    cfg = StackConfig(state=tmp_path, prefix="t1", s3_port=1, mlflow_port=2, dask_port=3)
    env = cfg.environment()
    assert env["TELESCOPE_LAKE_URL"] == "s3://t1-lake"
    assert env["TELESCOPE_INCOMING_URL"] == "s3://t1-incoming"
    assert env["TELESCOPE_S3_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:2"
    assert env["TELESCOPE_DASK_SCHEDULER"] == "tcp://127.0.0.1:3"
    assert env["TELESCOPE_DAGSTER_PG_URL"].endswith("/t1_dagster")
    assert env["TELESCOPE_DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    assert env["TELESCOPE_MLFLOW_ARTIFACTS"] == ""  # the server's proxied store


def test_the_instance_is_production_with_runs_sized_to_the_machine(tmp_path):
    import yaml

    production = yaml.safe_load((stack_cli.REPO / "deploy/production/dagster.yaml").read_text())
    assert production["concurrency"]["runs"]["max_concurrent_runs"] == 8
    written = yaml.safe_load(stack_cli.instance_yaml(2))
    assert written["concurrency"]["runs"].pop("max_concurrent_runs") == 2
    production["concurrency"]["runs"].pop("max_concurrent_runs")
    assert written == production
    assert 1 <= StackConfig(state=tmp_path).max_runs <= 8
