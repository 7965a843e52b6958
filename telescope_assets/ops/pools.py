"""The Dagster pools of the code location: shared state that one step at a time may write.

Their limits are set on the instance when it is deployed (``telescope-stack up`` does it),
not left to the first step that claims a pool: on PostgreSQL, two runs that create a
pool's limit row at the same moment make one of them fail (Dagster issue #33552,
``UniqueViolation`` on ``concurrency_limits``; the acceptance test's backfill met it).
The instance's ``pools: default_limit: 1`` is the same limit for any pool not set.
"""

__all__ = ["ALERT_OBJECTS", "LIGHT_CURVE_STORE", "POOLS", "set_pool_limits"]

#: The alert object table: two sites never create one object twice.
ALERT_OBJECTS = "alert_objects"
#: The light-curve object registry and tiles: one night at a time.
LIGHT_CURVE_STORE = "light_curve_store"
POOLS = {ALERT_OBJECTS: 1, LIGHT_CURVE_STORE: 1}


def set_pool_limits(instance) -> dict[str, int]:
    """Set every pool's limit on a ``DagsterInstance`` (idempotent); returns them."""
    for pool, limit in POOLS.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return dict(POOLS)
