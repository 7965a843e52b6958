"""A standing dask cluster on this machine, and ``telescope-ui``: Dagster's UI beside one.

Without a scheduler address, every run starts a local dask cluster of its own and closes
it at the end: its workers import astropy, photutils and torch again, and load the
masters, references and models again, for every run. That is seconds per run, which a
frame's latency to an alert cannot afford. ``telescope-ui`` (``make ui``) therefore starts
``dagster dev`` with a *standing* cluster beside it — a scheduler and worker processes on
127.0.0.1 that live as long as the UI — and points the runs at it
(``TELESCOPE_DASK_SCHEDULER``). Its workers keep what they loaded: masters and reference
catalogues (per-process caches in ``tasks``) and models (:mod:`telescope_assets.ml.model_registry`).
The production stack (``telescope-stack``) runs the same scheduler and workers.

    telescope-ui [--port 3000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "WORKER_MALLOC",
    "console_script",
    "main",
    "scheduler_argv",
    "standing_cluster",
    "worker_argv",
]

REPO = Path(__file__).resolve().parents[2]

#: glibc malloc thresholds of this project's dask workers. Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (memory handed back to the system at once), which
#: also freezes glibc's mmap threshold at 128 KiB: each of the many 16-32 MB arrays of a
#: 2048² frame's calibration, catalogue and subtraction then comes fresh from the kernel,
#: page by page. With large arrays served from the heap (mmap above 32 MiB, trim above
#: 64 MiB) those took 2.0 / 4.6 / 3.9 s instead of 2.4 / 5.2 / 4.9 s (measured in one
#: process each way); a worker holds up to 64 MB more between tasks.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": "67108864", "MALLOC_MMAP_THRESHOLD_": "33554432"}


def console_script(name: str) -> str:
    """A console script of this environment (the venv this runs from)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def scheduler_argv(port: int, dashboard: str, scheduler_file: Path | None = None) -> list[str]:
    """``dask scheduler`` on 127.0.0.1 (``port`` 0: any free one, named in the file)."""
    argv = [console_script("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--dashboard-address", dashboard]
    return argv + (["--scheduler-file", str(scheduler_file)] if scheduler_file else [])


def worker_argv(scheduler: str, n_workers: int, local_directory: Path) -> list[str]:
    """``n_workers`` single-threaded ``dask worker`` processes, everything on 127.0.0.1.

    ``scheduler`` is an address or, prefixed ``file:``, a scheduler file.
    """
    where = (
        ["--scheduler-file", scheduler.removeprefix("file:")]
        if scheduler.startswith("file:")
        else [scheduler]
    )
    return [
        console_script("dask"), "worker", *where,
        "--nworkers", str(n_workers), "--nthreads", "1",
        # Without a dashboard a worker still serves health and metrics over HTTP, on
        # every interface unless told otherwise.
        "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
        "--local-directory", str(local_directory.resolve()),
        # Imports the science stack and loads the champions as the worker starts, so
        # that the first frame of a new cluster is not the slow one (warmup.py).
        "--preload", "telescope_assets.ops.warmup",
    ]  # fmt: skip


def _n_workers(address: str) -> int:
    from distributed import Client

    try:
        with Client(address, timeout=5) as client:
            return len(client.scheduler_info()["workers"])
    except OSError:
        return 0


@contextmanager
def standing_cluster(workdir: Path, n_workers: int = 2, timeout: float = 120) -> Iterator[str]:
    """Start a scheduler and ``n_workers`` workers; yield the scheduler's address; stop them.

    Logs and the scheduler file are kept in ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning", **WORKER_MALLOC}
    procs = []
    try:
        with (workdir / "scheduler.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    scheduler_argv(0, "127.0.0.1:0", scheduler_file),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            )
        address = _wait(
            lambda: scheduler_file.exists() and json.loads(scheduler_file.read_text())["address"],
            timeout, "the dask scheduler", procs, workdir,
        )  # fmt: skip
        with (workdir / "workers.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    worker_argv(address, n_workers, workdir),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            )
        _wait(lambda: _n_workers(address) >= n_workers, timeout, "the dask workers", procs, workdir)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait(ready, timeout: float, what: str, procs, workdir: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process exited ({proc.returncode}); see {workdir}")
        try:
            value = ready()
        except (ValueError, KeyError):  # the scheduler file is being written
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; see the logs in {workdir}")


def main(argv: list[str] | None = None) -> int:
    """``dagster dev`` on 127.0.0.1 with a standing dask cluster for its runs."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("TELESCOPE_DASK_WORKERS", "2"))
    )
    parser.add_argument(
        "--dask-dir",
        type=Path,
        default=Path(os.environ.get("DAGSTER_HOME", REPO)) / "data" / "dask",
        help="logs and scratch of the cluster",
    )
    args = parser.parse_args(argv)
    # Terminated (SIGTERM) as when interrupted: the finally clauses stop everything. And
    # interruptible even when started in the background, where a shell ignores SIGINT —
    # which ``dagster dev`` would inherit and then ignore SIGINT and SIGTERM alike.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"starting {args.workers} dask workers (logs: {args.dask_dir}) ...", flush=True)
    with standing_cluster(args.dask_dir, args.workers) as address:
        print(f"dask scheduler {address}; Dagster UI on http://127.0.0.1:{args.port}", flush=True)
        env = {**os.environ, "TELESCOPE_DASK_SCHEDULER": address}
        dev = subprocess.Popen(
            [console_script("dagster"), "dev", "-h", "127.0.0.1", "-p", str(args.port),
             "-w", str(REPO / "workspace.yaml")],
            env=env,
            start_new_session=True,  # its own group, stopped as a terminal's Ctrl-C would
        )  # fmt: skip
        try:
            return dev.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            print("stopping Dagster ...", flush=True)
            _stop_group(dev)
            print("stopping the dask cluster ...", flush=True)


def _stop_group(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Interrupt a process group as Ctrl-C in a terminal does, then kill what is left.

    Every process at once: ``dagster dev`` interrupted alone waits on its webserver and
    daemon, which never hear of it.
    """
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
