"""A run launcher whose run processes start with Dagster and the data stack already imported.

Dagster's default launcher has the code server *spawn* a new interpreter for every run,
which imports Dagster, pandas, pyarrow and the code location again before the first step:
2.4 s of imports on this project's two-core machine, paid twice on a frame's way to its
follow-up requests (the frame's run, then the follow-up run). ``PreloadedRunLauncher``
keeps one small server process that has imported those libraries once (the ``preload``
list) and *forks* a run worker from it for each run; the worker then imports only this
project's code (0.35 s), fresh, so an edited code location or site registry is picked up
by the next run exactly as with the default launcher.

A run worker is what ``dagster api execute_run`` runs (the command other launchers start
in containers): it reads the run from the instance, reports its pid and executes it. The
launcher records that pid in the run's ``telescope/run_worker_pid`` tag; termination from
the UI interrupts it (SIGTERM, which Dagster handles as an interrupt) and run monitoring
asks whether it is still alive. Workers are processes on the launcher's own machine, so
this is the launcher of a single-machine instance (``dagster dev``, ``telescope-ui``); the
production instance keeps Dagster's default (docs/decisions.md).

Configured in ``dagster.yaml``::

    run_launcher:
      module: telescope_assets.ops.launcher
      class: PreloadedRunLauncher
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData

__all__ = ["DEFAULT_PRELOAD", "PID_TAG", "PreloadedRunLauncher", "serve"]

#: Imported once by the server, before any fork. Third-party only: this project's own
#: modules are imported by each run worker, so that code changes take effect.
DEFAULT_PRELOAD = (
    "dagster",
    "dagster._cli.api",
    # What loading a SQLite instance imports (SQLAlchemy, Alembic, the storages): 1.1 s.
    "dagster._core.instance.factory",
    "dagster._core.storage.sqlite_storage",
    "dagster._daemon.controller",
    "pandas",
    "pyarrow.parquet",
    "fsspec",
    "yaml",
    # A run's client of the dask cluster (0.3 s); astropy's FITS and WCS (reference and
    # alert steps), and its time and coordinates for follow-up planned in the run's own
    # process when no cluster stands (0.6 s together). None of them starts a thread.
    "distributed",
    "astropy.io.fits",
    "astropy.wcs",
    "astropy.time",
    "astropy.coordinates",
)
PID_TAG = "telescope/run_worker_pid"


class PreloadedRunLauncher(RunLauncher, ConfigurableClass):
    """Forks each run worker from a server that has Dagster and pandas imported."""

    def __init__(self, preload: Sequence[str] | None = None, inst_data=None):
        self._inst_data = inst_data
        self._preload = list(DEFAULT_PRELOAD if preload is None else preload)
        self._server: subprocess.Popen | None = None
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        """Where this launcher's configuration came from (Dagster's ConfigurableClass)."""
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        """``preload``: the modules the server imports (default ``DEFAULT_PRELOAD``)."""
        return {"preload": dg.Field([str], is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PreloadedRunLauncher:
        """The launcher a ``dagster.yaml`` entry describes."""
        return cls(preload=config_value.get("preload"), inst_data=inst_data)

    # -- the server ----------------------------------------------------------------------

    def _ensure_server(self) -> subprocess.Popen:
        if self._server is not None and self._server.poll() is not None:
            self._stop_server()  # it died: close its pipes, start another
        if self._server is None:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "telescope_assets.ops.launcher", *self._preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            ready = self._server.stdout.readline().strip()
            if ready != "ready":
                self._stop_server(kill=True)
                raise RuntimeError(
                    f"the run worker server did not start (said {ready!r}); its error is "
                    "above in this process's log. Remove run_launcher from dagster.yaml to "
                    "fall back to Dagster's default launcher."
                )
        return self._server

    def _fork(self, request: dict) -> int:
        with self._lock:
            for _attempt in range(2):
                server = self._ensure_server()
                try:
                    server.stdin.write(json.dumps(request) + "\n")
                    server.stdin.flush()
                    answer = server.stdout.readline().strip()
                except BrokenPipeError:
                    answer = ""
                if answer.isdigit():
                    return int(answer)
                self._stop_server(kill=True)  # a dead or confused server: a new one, once
            raise RuntimeError("the run worker server could not fork a run worker")

    # -- RunLauncher ---------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        """Fork a worker for the run and record its pid."""
        from dagster._grpc.types import ExecuteRunArgs
        from dagster._serdes import serialize_value

        run = context.dagster_run
        args = ExecuteRunArgs(
            job_origin=context.job_code_origin,
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        pid = self._fork({"execute_run_args": serialize_value(args)})
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid)})
        self._instance.report_engine_event(
            f"Run worker forked from the preloaded server (pid: {pid}).", run, cls=self.__class__
        )

    def _pid(self, run_id: str) -> tuple[dg.DagsterRun | None, int | None]:
        run = self._instance.get_run_by_id(run_id)
        pid = run.tags.get(PID_TAG) if run is not None else None
        return run, int(pid) if pid else None

    def terminate(self, run_id: str) -> bool:
        """Interrupt the run's worker (Dagster reports the run canceled when it stops)."""
        run, pid = self._pid(run_id)
        if run is None or run.is_finished or pid is None or not _alive(pid):
            return False
        self._instance.report_run_canceling(run)
        os.kill(pid, signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        """Run monitoring can ask whether a run's worker is alive."""
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """Running while the worker process exists (the same machine as the launcher)."""
        _run, pid = self._pid(run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker pid recorded")
        if _alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.NOT_FOUND, f"run worker {pid} is gone")

    def _stop_server(self, kill: bool = False) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if kill:
            server.kill()
        for pipe in (server.stdin, server.stdout):
            # Closing stdin tells a healthy server to exit; a dead one broke the pipe.
            with contextlib.suppress(BrokenPipeError):
                pipe.close()
        server.wait(timeout=10)

    def dispose(self) -> None:
        """Stop the server (run workers already forked carry on)."""
        with self._lock:
            self._stop_server()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the server process ----------------------------------------------------------------


def serve(preload: Sequence[str]) -> None:
    """Import ``preload``, then fork a run worker for every request read from stdin.

    One JSON line in (``{"execute_run_args": ...}``), the worker's pid out. The server
    exits when its launcher closes stdin; workers it forked carry on.
    """
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # only slower: each run worker imports what it needs
            print(f"run worker server: not preloading {name}: {exc}", file=sys.stderr)
    if threading.active_count() != 1:  # forking a threaded process is unsafe
        raise RuntimeError(f"preloading {list(preload)} started threads; preload less")
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed goes to the log, never into the protocol
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished workers are reaped
    protocol.write("ready\n")
    protocol.flush()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                protocol.close()
                _run_worker(request["execute_run_args"])
            protocol.write(f"{pid}\n")
            protocol.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C of the instance that owns it (its process group): just stop


def _run_worker(execute_run_args: str) -> None:
    """In the forked child: execute the run as ``dagster api execute_run`` does, then exit."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        from dagster._cli.api import execute_run_command
        from dagster._utils.interrupts import setup_interrupt_handlers

        setup_interrupt_handlers()  # SIGTERM interrupts the run, as SIGINT does
        try:
            execute_run_command.callback(input_json=execute_run_args, compressed_input_json=None)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        # Outside the run's own error handling (which reports to the run): say it here.
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1:])
