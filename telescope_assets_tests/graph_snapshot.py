"""The code location's whole graph as plain data, and its stored snapshot.

``test_definitions`` compares the code location with ``snapshots/asset_graph.json``: a
change to any asset's key, dependencies, partition mappings, group, tags, kinds or
checks, to a job's selection or to a sensor or schedule shows as a diff in review.
After an intended change, write the snapshot again and commit it::

    python -m telescope_assets_tests.graph_snapshot
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from telescope_assets.registry import load_registry

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(pdef) -> dict | None:
    if pdef is None:
        return None
    out = {"type": type(pdef).__name__}
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        out["dimensions"] = {d.name: _partitions(d.partitions_def) for d in pdef.partitions_defs}
    elif isinstance(pdef, dg.StaticPartitionsDefinition):
        keys = list(pdef.get_partition_keys())
        # The sites come from the registry: adding a telescope must not change the snapshot.
        out["keys"] = "the site registry" if keys == load_registry().names else keys
    elif isinstance(pdef, dg.DynamicPartitionsDefinition):
        out["name"] = pdef.name
    elif isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        start = pdef.start.date().isoformat()
        # Like the sites, the first night comes from the registry.
        if start == load_registry().first_night:
            start = "the registry's first night"
        out |= {"cron": pdef.cron_schedule, "start": start, "tz": pdef.timezone}
    return out


def _asset(graph, key: dg.AssetKey) -> dict:
    node = graph.get(key)
    parents = sorted(node.parent_keys, key=lambda k: k.to_user_string())
    mappings = {}
    for parent in parents:
        mapping = graph.get_partition_mapping(key, parent)
        if node.partitions_def is not None and graph.get(parent).partitions_def is not None:
            mappings[parent.to_user_string()] = type(mapping).__name__
    return {
        "group": node.group_name,
        "deps": [p.to_user_string() for p in parents],
        "partitions": _partitions(node.partitions_def),
        "partition_mappings": mappings,
        "kinds": sorted(node.kinds),
        "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
        "checks": sorted(c.name for c in node.check_keys),
        "code_version": node.code_version,
        "pools": sorted(node.pools or ()),
    }


def _names(objects) -> list[str]:
    return [o.name for o in objects or ()]


def snapshot(defs: dg.Definitions) -> dict:
    """Assets, jobs, sensors and schedules of ``defs``, as JSON-ready data."""
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue  # Dagster's implicit asset job
        selected = job.asset_layer.executable_asset_keys if job.asset_layer else ()
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in selected),
            "partitions": _partitions(job.partitions_def),
            "tags": dict(sorted(job.tags.items())),
            "executor": job.executor_def.name,
        }
    sensors = {
        s.name: {
            "jobs": sorted(target.job_name for target in s.targets),
            "default_status": s.default_status.value,
            "minimum_interval_seconds": s.minimum_interval_seconds,
        }
        for s in sorted(map(defs.resolve_sensor_def, _names(defs.sensors)), key=lambda s: s.name)
    }
    schedules = {
        s.name: {
            "job": s.job_name,
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "default_status": s.default_status.value,
        }
        for s in sorted(
            map(defs.resolve_schedule_def, _names(defs.schedules)), key=lambda s: s.name
        )
    }
    return {
        "assets": {k.to_user_string(): _asset(graph, k) for k in keys},
        "jobs": jobs,
        "sensors": sensors,
        "schedules": schedules,
        "resources": sorted(defs.resources or {}),
    }


def dumps(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    from telescope_assets.definitions import defs

    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(dumps(snapshot(defs)))
    print(f"wrote {SNAPSHOT}")
