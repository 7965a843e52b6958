"""The production instance's storage on PostgreSQL, riding out a restart of the database.

dagster-postgres retries *opening* a connection (about 6 s of backoff), but not a statement
that was in flight when the server went away: a fast shutdown or restart then fails the
step that was logging or reading, and with it the run (measured: a 3 s ``pg_ctlcluster
restart`` in the middle of a run of ``frames_job`` failed it every time). These storages
are dagster-postgres's, with two changes:

* **reads** (``SELECT`` statements, reflection included) cut off by a lost connection are
  run again on a fresh one for up to :data:`RETRY_SECONDS` (a read is safe to repeat);
* **event writes** are retried the same way (below how, so that no event is lost).

Other writes (run status changes) are not repeated: one cut off fails as before, and the
run is retried by the instance's run retries or requeued by the ``reconciler`` sensor.

The insert of an event and its indexing are retried separately: once the insert has
returned the event's id the row exists (the engine autocommits), so only the indexing
(in one transaction, rolled back when the connection dies) is redone. The ``NOTIFY`` that
dagster-postgres still sends after each insert is kept for version skew only (nothing
listens): its failure after a successful insert is ignored. An insert cut off *after*
the server committed it but before the answer came back is the one case retried
blindly; it can leave a duplicate log row, never a lost one.
"""

from __future__ import annotations

import contextlib
import logging
import time

import sqlalchemy as db
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.utils import DagsterPostgresException, pg_url_from_config

__all__ = [
    "RETRY_SECONDS",
    "RestartTolerantPostgresEventLogStorage",
    "RestartTolerantPostgresRunStorage",
    "RetryingReadsConnection",
]

#: How long an event write keeps trying while the database is away.
RETRY_SECONDS = 20.0
_LOST = (db.exc.OperationalError, db.exc.InterfaceError, DagsterPostgresException)
_log = logging.getLogger(__name__)


class RetryingReadsConnection(db.engine.Connection):
    """A connection that runs a ``SELECT`` again when the server dropped it mid-statement.

    Once its (autobegun) transaction is rolled back, an invalidated SQLAlchemy connection
    opens a new DBAPI connection on its next use, so repeating the statement is all it takes.
    """

    def _isolation(self) -> str | None:
        # A transaction's own level (execution_options) or the engine's (create_engine's
        # isolation_level, kept by SQLAlchemy 2 on the dialect); without a round trip.
        own = self.get_execution_options().get("isolation_level")
        return own or getattr(self.dialect, "_on_connect_isolation_level", None)

    def execute(self, statement, parameters=None, *, execution_options=None):
        """Execute; a read cut off by a lost connection is repeated for a while."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return super().execute(statement, parameters, execution_options=execution_options)
            except db.exc.DBAPIError as exc:
                # Only a read in autocommit mode (dagster-postgres's default; its explicit
                # transactions run READ COMMITTED) is its own transaction: safe to repeat.
                autocommit = self._isolation() == "AUTOCOMMIT"
                retry = (
                    (exc.connection_invalidated or self.invalidated)  # lost, or not back yet
                    and getattr(statement, "is_select", False)
                    and autocommit
                    and time.monotonic() < deadline
                )
                if not retry:
                    raise
                _log.warning("a read lost its connection (%s); retrying", exc.orig)
                with contextlib.suppress(db.exc.SQLAlchemyError):
                    self.rollback()  # clears SQLAlchemy's autobegun, now invalid transaction
                time.sleep(0.5)


def _from_config(cls, inst_data, config_value):
    storage = cls(
        inst_data=inst_data,
        postgres_url=pg_url_from_config(config_value),
        should_autocreate_tables=config_value.get("should_autocreate_tables", True),
    )
    storage._engine._connection_cls = RetryingReadsConnection
    return storage


class RestartTolerantPostgresRunStorage(PostgresRunStorage):
    """``PostgresRunStorage`` whose reads survive a database restart."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        """Built from the same configuration as ``PostgresRunStorage``."""
        return _from_config(cls, inst_data, config_value)


class RestartTolerantPostgresEventLogStorage(PostgresEventLogStorage):
    """``PostgresEventLogStorage`` whose reads and event writes survive a database restart."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        """Built from the same configuration as ``PostgresEventLogStorage``."""
        return _from_config(cls, inst_data, config_value)

    def _retrying(self, what: str, fn):
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                return fn()
            except _LOST as exc:
                if time.monotonic() > deadline:
                    raise
                _log.warning("event log %s lost its connection (%s); retrying", what, exc)
                time.sleep(0.5)

    def _insert(self, event) -> int:
        table = SqlEventLogStorageTable
        statement = self.prepare_insert_event(event).returning(table.c.run_id, table.c.id)
        with self._connect() as conn:
            run_id, event_id = conn.execute(statement).one()
            # The row is stored; nothing listens for this notification (version skew only).
            with contextlib.suppress(*_LOST):
                conn.execute(db.text("NOTIFY run_events, :n"), {"n": f"{run_id}_{event_id}"})
        return int(event_id)

    def _index(self, event, event_id: int) -> None:
        asset_event = event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS
        if asset_event and event.dagster_event.asset_key:
            with self.index_transaction() as conn:
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)

    def store_event(self, event) -> None:
        """Store one event, retrying on a lost connection (see the module's docstring)."""
        event_id = self._retrying("insert", lambda: self._insert(event))
        self._retrying("index", lambda: self._index(event, event_id))
