"""Per-frame parallelism: a dask.distributed client, local cluster or remote scheduler."""

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field

__all__ = ["DaskResource"]


class DaskResource(dg.ConfigurableResource):
    """Maps per-frame work over dask workers.

    With no ``scheduler_address`` each use starts a local cluster of ``n_workers``
    processes (threads if ``processes`` is false) and closes it afterwards; with an
    address (``tcp://host:8786``) it connects to a running cluster. Results come back in
    input order, so they never depend on the number of workers.
    """

    scheduler_address: str | None = Field(
        default=None, description="tcp://host:port of a dask scheduler; None: local cluster."
    )
    n_workers: int = Field(default=2, description="Workers of the local cluster.")
    processes: bool = Field(default=True, description="Local workers as processes.")

    @contextmanager
    def client(self):
        """A connected ``distributed.Client``."""
        from distributed import Client, LocalCluster

        if self.scheduler_address:
            with Client(self.scheduler_address) as client:
                yield client
            return
        # Worker processes talk over TCP on loopback only; threads use in-process comms.
        where = {"host": "127.0.0.1"} if self.processes else {}
        with (
            LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=self.processes,
                dashboard_address=None,
                **where,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client

    def map(self, fn: Callable, items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``[fn(item, **kwargs) for item in items]``, computed on the cluster."""
        items = list(items)
        if not items:
            return []
        with self.client() as client:
            futures = client.map(fn, items, pure=False, **kwargs)
            return client.gather(futures)
