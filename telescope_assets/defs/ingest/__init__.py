"""Ingest: the drop zone into the lake, and the per site × night job it launches.

``frames_job`` runs everything that follows from new frames (the frames, catalogs and
transients groups); the ``new_frames`` sensor launches it for every batch ingested, the
``reconciler`` for partitions left unfinished.
"""

import dagster as dg

from telescope_assets.defs.ingest.sensors import frames_job, new_frames, reconciler

defs = dg.Definitions(jobs=[frames_job], sensors=[new_frames, reconciler])
