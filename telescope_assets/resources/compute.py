"""Per-frame parallelism: a dask.distributed client, local cluster or remote scheduler."""

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

__all__ = ["DaskResource"]


class DaskResource(dg.ConfigurableResource):
    """Maps per-frame work over dask workers.

    With no ``scheduler_address`` a run starts one local cluster of ``n_workers``
    processes (threads if ``processes`` is false) the first time an asset maps work, and
    closes it when the run ends, so every asset of a run shares it; with an address
    (``tcp://host:8786``) it connects to a running cluster. Results come back in input
    order, so they never depend on the number of workers.
    """

    scheduler_address: str | None = Field(
        default=None, description="tcp://host:port of a dask scheduler; None: local cluster."
    )
    n_workers: int = Field(default=2, description="Workers of the local cluster.")
    processes: bool = Field(default=True, description="Local workers as processes.")

    _client: Any = PrivateAttr(default=None)
    _cluster: Any = PrivateAttr(default=None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the run's cluster, if one was started."""
        self.close()

    def close(self) -> None:
        """Close the client and the local cluster."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _connect(self):
        from distributed import Client, LocalCluster

        if self._client is None:
            if self.scheduler_address:
                self._client = Client(self.scheduler_address)
            else:
                import dask

                from telescope_assets.ops.cluster import WORKER_MALLOC

                # Worker processes talk over TCP on loopback only; threads in-process.
                where = {"host": "127.0.0.1"} if self.processes else {}
                # The workers' malloc thresholds replace dask's (cluster.WORKER_MALLOC).
                environ = dask.config.get("distributed.nanny.pre-spawn-environ")
                with dask.config.set(
                    {"distributed.nanny.pre-spawn-environ": {**environ, **WORKER_MALLOC}}
                ):
                    self._cluster = LocalCluster(
                        n_workers=self.n_workers,
                        threads_per_worker=1,
                        processes=self.processes,
                        dashboard_address="127.0.0.1:0",  # any free port, loopback only
                        **where,
                    )
                self._client = Client(self._cluster)
        return self._client

    @contextmanager
    def client(self):
        """A connected ``distributed.Client`` (closed on exit if this call started it)."""
        started = self._client is None
        try:
            yield self._connect()
        finally:
            if started:
                self.close()

    def map(self, fn: Callable, items: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``[fn(item, **kwargs) for item in items]``, computed on the cluster."""
        items = list(items)
        if not items:
            return []
        client = self._connect()
        return client.gather(client.map(fn, items, pure=False, **kwargs))

    def run(
        self, fn: Callable, *args: Any, in_process_without_cluster: bool = False, **kwargs: Any
    ) -> Any:
        """``fn(*args, **kwargs)``, computed on one worker of the cluster.

        For work that is cheap once a worker has warmed up (scoring with a model it
        keeps loaded, visibility computations), not worth a process of its own per run.
        With ``in_process_without_cluster``, when there is no standing cluster (no
        scheduler address) and this run has not started its local one, ``fn`` runs here:
        starting a cluster for one cheap call would cost more than the call.
        """
        if in_process_without_cluster and not self.scheduler_address and self._client is None:
            return fn(*args, **kwargs)
        client = self._connect()
        return client.submit(fn, *args, pure=False, **kwargs).result()
