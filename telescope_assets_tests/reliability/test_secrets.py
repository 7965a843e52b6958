"""Secrets come only from the environment: none in tracked configuration or resource fields."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from telescope_assets.resources import (
    DaskResource,
    IncomingResource,
    LakeResource,
    MlflowResource,
    RegistryResource,
)

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_IN_URL = re.compile(r"//[^/@:\s]+:[^/@\s]+@")  # scheme://user:password@host
SECRET_WORDS = re.compile(r"(secret|password|passwd|token|access_key|credential)", re.I)


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))
    else:
        yield path, node


def test_no_configuration_file_holds_a_secret():
    tracked = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "deploy/production/dagster.yaml" in tracked
    for name in tracked:
        for path, value in _walk(yaml.safe_load((ROOT / name).read_text())):
            if SECRET_WORDS.search("/".join(path)):
                assert path[-1] == "env", (
                    f"{name}: {'/'.join(path)} is not read from the environment"
                )
            if isinstance(value, str):
                assert not PASSWORD_IN_URL.search(value), f"{name}: {'/'.join(path)}"
    # The production databases are named by environment variables only.
    config = yaml.safe_load((ROOT / "deploy" / "production" / "dagster.yaml").read_text())
    for part in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[part]["config"]["postgres_url"] == {"env": "TELESCOPE_DAGSTER_PG_URL"}


@pytest.mark.parametrize(
    "resource", [LakeResource, IncomingResource, MlflowResource, DaskResource, RegistryResource]
)
def test_no_resource_takes_a_secret_as_configuration(resource):
    fields = set(resource.model_fields)
    assert not {f for f in fields if SECRET_WORDS.search(f)}, fields
