"""Running the platform, apart from the domain code.

- ``stack``: ``telescope-stack``, the production profile started on one machine;
- ``cluster``: ``telescope-ui`` (``make ui``), ``dagster dev`` beside a standing dask cluster;
- ``launcher``: the embedded instance's run launcher (run workers forked from a warm server);
- ``warmup``: the preload of standing dask workers (science imports, champions);
- ``pools``: Dagster's concurrency pools and their limits;
- ``pg_storage``: the production instance's PostgreSQL storages, riding out a restart.
"""
