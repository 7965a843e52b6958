"""Dagster objects only: assets, checks, sensors, partitions and jobs, by domain."""
