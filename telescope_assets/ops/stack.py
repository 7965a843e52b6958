"""``telescope-stack``: the production profile, started and stopped on one machine.

``telescope-stack up`` starts every service of the production profile on 127.0.0.1, for
trying it before a real deployment:

======================  =======================================================  =====
service                 what                                                     port
======================  =======================================================  =====
S3-compatible store     ``moto_server`` (buckets ``<prefix>-lake``, ``-incoming``,  9000
                        ``-mlflow``)
MLflow                  ``mlflow server``: PostgreSQL backend store (database     5050
                        ``<prefix>_mlflow``), artifacts proxied to S3
dask                    ``dask scheduler`` and ``dask worker`` processes           8786
Dagster                 ``dagster-daemon`` and ``dagster-webserver`` on the       3030
                        production instance (``deploy/production/dagster.yaml``,
                        database ``<prefix>_dagster``)
======================  =======================================================  =====

PostgreSQL itself is not started: it is expected at ``$TELESCOPE_STACK_PG`` (default
``postgresql+psycopg2://postgres@127.0.0.1:5432``). ``up`` writes ``<state>/env``, the
environment every service runs with; ``source`` it to point the command-line tools
(``telescope-demo``, ``dagster``, ``mlflow``) at the stack. ``telescope-stack down``
stops every service.

moto keeps its objects in memory, so the lake does not outlive the stack; ``up`` therefore
always starts from empty databases (dropping the ones a previous ``up`` made), so that the
Dagster instance and the MLflow registry never point at objects that are gone.

Ports, the state folder and the database/bucket prefix are options (and environment
variables), so that a test can run a second stack beside a developer's.
"""

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from telescope_assets.ops.cluster import WORKER_MALLOC, console_script, scheduler_argv, worker_argv

__all__ = ["Stack", "StackConfig", "main"]

#: Credentials of the local S3 server. moto accepts any; a real store takes them from
#: the environment of the deployment, never from a file of the project.
LOCAL_S3_KEYS = {"AWS_ACCESS_KEY_ID": "telescope", "AWS_SECRET_ACCESS_KEY": "telescope-local"}
DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REPO = Path(__file__).resolve().parents[2]


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class StackConfig:
    """Where the stack's services listen and keep their state."""

    state: Path = field(
        default_factory=lambda: Path(os.environ.get("TELESCOPE_STACK_DIR", ".stack"))
    )
    prefix: str = field(
        default_factory=lambda: os.environ.get("TELESCOPE_STACK_PREFIX", "telescope")
    )
    postgres: str = field(default_factory=lambda: os.environ.get("TELESCOPE_STACK_PG", DEFAULT_PG))
    s3_port: int = field(default_factory=lambda: _env_int("TELESCOPE_STACK_S3_PORT", 9000))
    mlflow_port: int = field(default_factory=lambda: _env_int("TELESCOPE_STACK_MLFLOW_PORT", 5050))
    dask_port: int = field(default_factory=lambda: _env_int("TELESCOPE_STACK_DASK_PORT", 8786))
    dagster_port: int = field(
        default_factory=lambda: _env_int("TELESCOPE_STACK_DAGSTER_PORT", 3030)
    )
    dask_workers: int = field(default_factory=lambda: _env_int("TELESCOPE_STACK_DASK_WORKERS", 2))
    #: Runs at once. The production instance allows 8 (a deployment spreads them over
    #: machines); one machine runs each in its own process beside every service, so more
    #: runs than cores only thrash (8 on 2 cores made a 4-minute backfill take over 10).
    max_runs: int = field(
        default_factory=lambda: _env_int("TELESCOPE_STACK_MAX_RUNS", min(8, os.cpu_count() or 2))
    )

    @property
    def s3_url(self) -> str:
        """The S3 endpoint."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        """The MLflow server (tracking, registry and UI)."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def dagster_url(self) -> str:
        """The Dagster webserver (UI and GraphQL)."""
        return f"http://127.0.0.1:{self.dagster_port}"

    @property
    def dask_address(self) -> str:
        """The dask scheduler."""
        return f"tcp://127.0.0.1:{self.dask_port}"

    def bucket(self, kind: str) -> str:
        """The bucket of one kind: ``lake``, ``incoming`` or ``mlflow``."""
        return f"{self.prefix}-{kind}".replace("_", "-")

    def database(self, kind: str) -> str:
        """The PostgreSQL database of one kind: ``dagster`` or ``mlflow``."""
        return f"{self.prefix}_{kind}".replace("-", "_")

    def pg_url(self, kind: str) -> str:
        """SQLAlchemy URL of one database (``dagster`` or ``mlflow``)."""
        return f"{self.postgres}/{self.database(kind)}"

    def environment(self) -> dict[str, str]:
        """The variables every service (and a user's shell) runs with."""
        home = (self.state / "dagster_home").resolve()
        env = {
            **LOCAL_S3_KEYS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_HOME": str(home),
            "TELESCOPE_DAGSTER_PG_URL": self.pg_url("dagster"),
            "TELESCOPE_DAGSTER_LOGS": str(home / "compute_logs"),
            "TELESCOPE_S3_ENDPOINT_URL": self.s3_url,
            "TELESCOPE_LAKE_URL": f"s3://{self.bucket('lake')}",
            "TELESCOPE_INCOMING_URL": f"s3://{self.bucket('incoming')}",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            # Empty: new experiments store their artifacts where the server says (proxied
            # to S3), so clients need no S3 credentials for models.
            "TELESCOPE_MLFLOW_ARTIFACTS": "",
            "TELESCOPE_DASK_SCHEDULER": self.dask_address,
        }
        if os.environ.get("TELESCOPE_ASSETS_REGISTRY"):
            env["TELESCOPE_ASSETS_REGISTRY"] = str(
                Path(os.environ["TELESCOPE_ASSETS_REGISTRY"]).resolve()
            )
        return env


def instance_yaml(max_runs: int) -> str:
    """The production instance (``deploy/production/dagster.yaml``) with ``max_runs``."""
    import yaml

    config = yaml.safe_load((REPO / "deploy" / "production" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_runs
    return (
        "# deploy/production/dagster.yaml as telescope-stack runs it on one machine:\n"
        f"# at most {max_runs} runs at once (TELESCOPE_STACK_MAX_RUNS).\n"
        + yaml.safe_dump(config, sort_keys=False)
    )


def _exited(what: str, proc: subprocess.Popen, log: Path) -> None:
    """Raise, with the end of its log, if a service's process has exited."""
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} exited with {proc.returncode}; its log {log} ends:\n{tail}")


def _wait(what: str, ready, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _exited(what, proc, log)
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s: see its log {log}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    """Start, describe and stop the local production stack."""

    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.pids_file = self.config.state / "pids.json"
        self._procs: dict[str, subprocess.Popen] = {}  # the services this object started

    # -- state ---------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Process (group) id of each started service."""
        if not self.pids_file.exists():
            return {}
        return json.loads(self.pids_file.read_text())

    def _save_pid(self, name: str, pid: int) -> None:
        pids = self.pids()
        pids[name] = pid
        self.pids_file.write_text(json.dumps(pids, indent=1))

    def running(self) -> dict[str, bool]:
        """Each started service and whether its process is alive."""
        out = {}
        for name, pid in self.pids().items():
            try:
                os.kill(pid, 0)
                out[name] = True
            except ProcessLookupError:
                out[name] = False
        return out

    # -- services ------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = REPO):
        log = self.config.state / "logs" / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: `down` stops its children
            )
        self._save_pid(name, proc.pid)
        self._procs[name] = proc
        return proc, log

    def _databases(self, create: bool = True) -> None:
        """Drop the stack's two databases, and create them empty again if ``create``."""
        import psycopg2

        dsn = self.config.postgres.replace("postgresql+psycopg2://", "postgresql://")
        try:
            admin = psycopg2.connect(f"{dsn}/postgres", connect_timeout=5)
        except psycopg2.OperationalError as exc:
            raise RuntimeError(
                f"PostgreSQL is not reachable at {dsn}: start it, or set TELESCOPE_STACK_PG "
                f"to a server this user may create databases on ({exc})"
            ) from exc
        admin.autocommit = True
        with admin.cursor() as cur:
            for kind in ("dagster", "mlflow"):
                name = self.config.database(kind)
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                if create:
                    cur.execute(f'CREATE DATABASE "{name}"')
        admin.close()

    def drop_databases(self) -> None:
        """Drop the stack's two databases (``down --purge``)."""
        self._databases(create=False)

    def _buckets(self) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.config.s3_url,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        for kind in ("lake", "incoming", "mlflow"):
            s3.create_bucket(Bucket=self.config.bucket(kind))

    def up(self, progress=print) -> dict[str, str]:
        """Start every service; returns the URLs to open."""
        cfg = self.config
        self._preflight()
        env = self._prepare_state()
        try:
            progress(
                f"[1/5] PostgreSQL databases {cfg.database('dagster')}, {cfg.database('mlflow')}"
            )
            self._databases()
            # The pools' limits, before any run can race to create them (ops/pools.py).
            subprocess.run(
                [sys.executable, "-c", "import dagster as dg; from telescope_assets.ops.pools "
                 "import set_pool_limits; print(set_pool_limits(dg.DagsterInstance.get()))"],
                env={**os.environ, **env}, check=True, capture_output=True, cwd=REPO,
            )  # fmt: skip
            progress(f"[2/5] S3 (moto) on {cfg.s3_url}")
            self._start_s3(env)
            progress(f"[3/5] MLflow server on {cfg.mlflow_url}")
            self._start_mlflow(env)
            progress(f"[4/5] dask scheduler {cfg.dask_address} and {cfg.dask_workers} workers")
            self._start_dask(env)
            progress(f"[5/5] Dagster daemon and webserver on {cfg.dagster_url}")
            self._start_dagster(env)
        except BaseException:
            self.down()
            raise
        return self.urls()

    def _preflight(self) -> None:
        """Refuse to start over a running stack or on ports that are taken."""
        cfg = self.config
        if any(self.running().values()):
            raise RuntimeError(
                f"a stack from {cfg.state} is already running: run `telescope-stack down` first"
            )
        for port in (cfg.s3_port, cfg.mlflow_port, cfg.dask_port, cfg.dagster_port):
            if _port_open(port):
                raise RuntimeError(
                    f"port {port} on 127.0.0.1 is taken: stop what uses it or choose other "
                    "ports (telescope-stack up --help)"
                )

    def _prepare_state(self) -> dict[str, str]:
        """The state folder, the instance's home and config, the environment file."""
        cfg = self.config
        (cfg.state / "logs").mkdir(parents=True, exist_ok=True)
        self.pids_file.write_text("{}")
        env = cfg.environment()
        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        Path(env["TELESCOPE_DAGSTER_LOGS"]).mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(instance_yaml(cfg.max_runs))
        (cfg.state / "env").write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        )
        (cfg.state / "config.json").write_text(json.dumps(asdict(cfg), default=str, indent=1))
        return env

    def _start_s3(self, env: dict[str, str]) -> None:
        cfg = self.config
        proc, log = self._start(
            "s3",
            [console_script("moto_server"), "-H", "127.0.0.1", "-p", str(cfg.s3_port)],
            env,
        )
        _wait("moto_server", lambda: _http_ok(cfg.s3_url), 60, proc, log)
        self._buckets()

    def _start_mlflow(self, env: dict[str, str]) -> None:
        cfg = self.config
        mlflow_env = {**env, "MLFLOW_S3_ENDPOINT_URL": cfg.s3_url}
        proc, log = self._start(
            "mlflow",
            [
                console_script("mlflow"), "server",
                "--backend-store-uri", cfg.pg_url("mlflow"),
                "--artifacts-destination", f"s3://{cfg.bucket('mlflow')}/artifacts",
                "--serve-artifacts",
                "--host", "127.0.0.1", "--port", str(cfg.mlflow_port),
                "--workers", "1",
            ],
            mlflow_env,
        )  # fmt: skip
        _wait("mlflow server", lambda: _http_ok(f"{cfg.mlflow_url}/health"), 180, proc, log)

    def _start_dask(self, env: dict[str, str]) -> None:
        cfg = self.config
        proc, log = self._start(
            "dask-scheduler",
            scheduler_argv(cfg.dask_port, f"127.0.0.1:{cfg.dask_port + 1}"),
            env,
        )
        _wait("dask scheduler", lambda: _port_open(cfg.dask_port), 60, proc, log)
        proc, log = self._start(
            "dask-workers",
            worker_argv(cfg.dask_address, cfg.dask_workers, cfg.state / "dask"),
            {**env, **WORKER_MALLOC},
        )
        _wait("dask workers", lambda: self._dask_workers() >= cfg.dask_workers, 120, proc, log)

    def _start_dagster(self, env: dict[str, str]) -> None:
        cfg = self.config
        workspace = str(REPO / "workspace.yaml")
        proc, log = self._start(
            "dagster-daemon", [console_script("dagster-daemon"), "run", "-w", workspace], env
        )
        web, web_log = self._start(
            "dagster-webserver",
            [
                console_script("dagster-webserver"),
                "-h", "127.0.0.1", "-p", str(cfg.dagster_port), "-w", workspace,
            ],
            env,
        )  # fmt: skip
        _wait(
            "dagster-webserver",
            lambda: _http_ok(f"{cfg.dagster_url}/server_info"),
            240,
            web,
            web_log,
        )
        # The daemon serves nothing to poll: it must still be running by now.
        _exited("dagster-daemon", proc, log)

    def _dask_workers(self) -> int:
        from distributed import Client

        try:
            with Client(self.config.dask_address, timeout=5) as client:
                return len(client.scheduler_info()["workers"])
        except OSError:
            return 0

    def urls(self) -> dict[str, str]:
        """Where to look: the UIs, the S3 endpoint and the environment file."""
        cfg = self.config
        return {
            "Dagster UI": cfg.dagster_url,
            "MLflow UI": cfg.mlflow_url,
            "dask dashboard": f"http://127.0.0.1:{cfg.dask_port + 1}/status",
            "S3 endpoint": cfg.s3_url,
            "environment": str((cfg.state / "env").resolve()),
        }

    def down(self, timeout: float = 20.0) -> list[str]:
        """Stop every service (SIGTERM to its process group, SIGKILL after ``timeout``)."""
        stopped = []
        pids = self.pids()
        # Dagster first (it uses the others), S3 last.
        for name in reversed(list(pids)):
            pid = pids[name]
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            stopped.append(name)
        deadline = time.monotonic() + timeout
        for name in stopped:
            while time.monotonic() < deadline:
                try:
                    os.killpg(pids[name], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pids[name], signal.SIGKILL)
        for proc in self._procs.values():
            proc.wait(timeout=5)  # reap what this object started
        self._procs.clear()
        if self.pids_file.exists():
            self.pids_file.write_text("{}")
        return stopped


def main(argv: list[str] | None = None) -> int:
    """Command line: ``telescope-stack up|down|status``."""
    parser = argparse.ArgumentParser(prog="telescope-stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service (fresh databases and buckets)")
    down = sub.add_parser("down", help="stop every service")
    down.add_argument("--purge", action="store_true", help="also drop the two databases")
    sub.add_parser("status", help="which services run, and where")
    for p in (up, down, sub.choices["status"]):
        p.add_argument("--state", type=Path, help="state folder (default .stack)")
        p.add_argument("--prefix", help="database and bucket prefix (default telescope)")
    up.add_argument("--s3-port", type=int)
    up.add_argument("--mlflow-port", type=int)
    up.add_argument("--dask-port", type=int, help="scheduler port (its dashboard is the next)")
    up.add_argument("--dagster-port", type=int)
    up.add_argument("--max-runs", type=int, help="runs at once (default: the machine's cores)")
    args = parser.parse_args(argv)

    config = StackConfig()
    if args.state:
        config.state = args.state
    saved = config.state / "config.json"
    if args.command != "up" and saved.exists():
        # down/status use what up used.
        for key, value in json.loads(saved.read_text()).items():
            setattr(config, key, Path(value) if key == "state" else value)
    for key in ("prefix", "s3_port", "mlflow_port", "dask_port", "dagster_port", "max_runs"):
        if getattr(args, key, None) is not None:
            setattr(config, key, getattr(args, key))
    stack = Stack(config)

    if args.command == "up":
        urls = stack.up(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        width = max(map(len, urls))
        for name, url in urls.items():
            print(f"{name:<{width}}  {url}")
        print(f"\nUse it from a shell:  source {urls['environment']}")
        print("Stop it:              telescope-stack down")
    elif args.command == "down":
        stopped = stack.down()
        if args.purge:
            stack.drop_databases()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        running = stack.running()
        if not running:
            print(f"no stack started from {config.state}")
            return 1
        for name, alive in running.items():
            print(f"{name:<18} {'running' if alive else 'STOPPED'}")
        for name, url in stack.urls().items():
            print(f"{name:<18} {url}")
        return 0 if all(running.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
