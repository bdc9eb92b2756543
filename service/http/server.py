"""``vcf-cds serve``: the production server (gunicorn, gthread workers) around ``create_app``.

Before any worker starts, the master: checks the audit key policy, migrates the database schema
once, and prepares Prometheus multiprocess mode. Logs are JSON lines; the access log has method,
path (never the query string), status, size and time, and no bodies. SIGTERM (``docker stop``)
is a graceful shutdown: workers finish their requests within ``graceful_timeout``.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication

from ..auth.issuers import PUBLIC_URL_REQUIRED, IssuerConfigError, is_loopback, load_issuers
from ..config import PREFIX, load_settings
from ..errors import operation_outcome
from ..observe import logs
from .cors import parse_origins

log = logging.getLogger("vcf_cds.server")

RULE = "*" * 76
OPEN_WARNING = f"""
{RULE}
NO AUTHENTICATION: no trusted issuers are configured (VCF_CDS_TRUSTED_ISSUERS).
Anyone who can reach {{bind}} may call /cds-services with patient data.
Allowed on loopback only, for development. See README, "Authentication and CORS".
{RULE}"""
OFF_WARNING = f"""
{RULE}
AUTHENTICATION IS OFF (VCF_CDS_AUTH=off): /cds-services on {{bind}} accepts
unauthenticated calls from anyone who can reach it. Never with real patient data.
{RULE}"""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus-client reads (see observe/metrics.py)
GRACEFUL_SECONDS = 20  # docker stop waits 10 s by default: docker-compose.yml sets stop_grace_period 30s
# settings newer gunicorn versions have and older ones lack: set only where known
OPTIONAL = {"control_socket_disable"}


class JsonLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logs as JSON lines; the access line built from fields, never from the raw URI."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(logs.JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        self.access_log.info(
            "request",
            extra={
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),  # RAW_URI would carry the query string
                "status": int(status),
                "bytes": getattr(resp, "sent", None),
                "durationMs": round(request_time.total_seconds() * 1000, 1),
                "remote": environ.get("REMOTE_ADDR"),
            },
        )


def _child_exit(server: Any, worker: Any) -> None:
    # prometheus_client directly, not service.observe.metrics: importing that would make the master
    # create sample files of its own
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _worker_exit(server: Any, worker: Any) -> None:
    # close pooled database connections cleanly instead of dropping them with the process
    database = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("vcf_cds_db")
    if database is not None:
        database.engine.dispose()


_ISSUE_CODES = {400: "invalid", 403: "forbidden", 414: "too-costly", 431: "too-costly", 501: "not-supported"}


def write_outcome(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's own error answers (bad request line, headers, framing) as our OperationOutcome.

    Replaces ``gunicorn.util.write_error``, whose HTML page quotes the request line (it may carry a
    query string): ``message`` is not repeated.
    """
    outcome = operation_outcome(_ISSUE_CODES.get(status, "exception"), f"{reason}: the HTTP request is malformed.")
    body = orjson.dumps(outcome)
    head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
    util.write_nonblock(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)


DEFAULT_WORKERS = 2  # the defaults of VCF_CDS_WORKERS / VCF_CDS_THREADS
DEFAULT_THREADS = 4
# A hook call parses its body into thousands of dicts and lists that live until it answers, and by
# default Python walks them all again each time 700 more are made, a measurable part of a realistic
# call (benchmarks/RESULTS.md, "Measurements the code relies on"). So the youngest generation is
# collected after 10,000; the older ones keep their defaults.
GC_YOUNG_THRESHOLD = 10_000


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in OPTIONAL and key not in self.cfg.settings:
                continue
            self.cfg.set(key, value)

    def load(self) -> Any:
        from .. import create_app

        logs.configure(str(load_settings()["LOG_LEVEL"]))
        util.write_error = write_outcome  # in the worker, which is where gunicorn writes them
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        return create_app()


def freeze_startup_heap(worker: Any = None) -> None:
    """Keep what a worker loaded at start-up out of every later garbage collection (gunicorn's
    ``post_worker_init``).

    The value sets, Flask and the fhir.resources models live as long as the worker. Left in the
    collected generations, each full collection walks them all, and a large request body (a
    10,000-resource record is ~1M objects) triggers several: a large share of such a request's time
    (benchmarks/RESULTS.md, "Measurements the code relies on").
    """
    gc.collect()
    gc.freeze()


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def check_startup(host: str, port: int, settings: Mapping[str, Any]) -> str | None:
    """Why the service must not start on ``host`` with these settings, or None (warnings are logged).

    With no trusted issuers it is open: allowed on loopback only, unless ``VCF_CDS_AUTH=off``.
    """
    bind = bind_address(host, port)
    try:
        issuers = load_issuers(settings["TRUSTED_ISSUERS"])
    except IssuerConfigError as e:
        return str(e)
    if settings["AUTH"] == "off":
        log.warning(OFF_WARNING.format(bind=bind))
        return None
    if not issuers:
        if not is_loopback(host):
            return (
                f"refusing to serve on {bind} without authentication: no trusted issuers are configured. "
                "Set VCF_CDS_TRUSTED_ISSUERS to a trusted-issuer file (see README, 'Authentication and CORS'), "
                "bind to 127.0.0.1, or set VCF_CDS_AUTH=off explicitly (never with real patient data)."
            )
        log.warning(OPEN_WARNING.format(bind=bind))
        return None
    if not settings.get("PUBLIC_URL"):
        return PUBLIC_URL_REQUIRED
    return None


def gunicorn_options(
    host: str,
    port: int,
    workers: int = DEFAULT_WORKERS,
    threads: int = DEFAULT_THREADS,
    log_level: str = "info",
    trusted_proxies: Sequence[str] = (),
) -> dict[str, Any]:
    """The gunicorn settings of ``vcf-cds serve`` (the benchmarks run their baselines with these too)."""
    options: dict[str, Any] = {
        "bind": bind_address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": GRACEFUL_SECONDS,
        "timeout": 30,
        "keepalive": 5,  # behind a load balancer whose idle timeout is longer than gunicorn's default 2 s
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "logger_class": JsonLogger,
        "proc_name": "vcf-cds",
        "child_exit": _child_exit,
        "worker_exit": _worker_exit,
        "post_worker_init": freeze_startup_heap,
        # no control socket: it lands in $HOME and two servers on one machine would share it
        "control_socket_disable": True,
        # gunicorn believes X-Forwarded-Proto (and friends) from 127.0.0.1 and ::1 by default, or from
        # $FORWARDED_ALLOW_IPS: only VCF_CDS_TRUSTED_PROXIES here, as in the application (proxies.py)
        "forwarded_allow_ips": ",".join(trusted_proxies),
        # nor may a proxy rewrite SCRIPT_NAME / PATH_INFO: the audience is PUBLIC_URL + the path called
        "forwarder_headers": "",
    }
    if Path("/dev/shm").is_dir():
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off the container's overlay filesystem
    return options


def prepare_metrics_dir() -> str | None:
    """Point prometheus-client's multiprocess mode at an empty folder; the folder we made, if any."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # samples of a previous run would be added to this one's
            stale.unlink()
        return None
    made = tempfile.mkdtemp(prefix="vcf-cds-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def check_audit_key(host: str) -> str | None:
    """None if serving may go on (making a shared key when unset on loopback), else why not."""
    if os.environ.get(PREFIX + "AUDIT_KEY"):
        return None
    if not is_loopback(host):
        return (
            f"{PREFIX}AUDIT_KEY is not set. On {host} the service keeps an audit log that must stay searchable "
            f"by patient: set {PREFIX}AUDIT_KEY to a secret of 32+ characters (openssl rand -hex 32), keep it "
            "safe and the same across restarts."
        )
    # one key for every worker of this run (they inherit the environment), lost when the server stops
    os.environ[PREFIX + "AUDIT_KEY"] = secrets.token_hex(32)
    log.warning(
        "%sAUDIT_KEY is not set: the audit log hashes patient ids with a random key that is lost when the "
        "server stops, so those rows can never be matched to a patient. Fine for development on loopback; "
        "set %sAUDIT_KEY anywhere else.",
        PREFIX,
        PREFIX,
    )
    return None


def migrate_database(url: str) -> bool:
    """Create or upgrade the schema of ``url``; False (the reason logged, no secrets) if that failed."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..store.db import create_db_engine, display_url, migrate

    try:
        engine = create_db_engine(url)
    except (SQLAlchemyError, ValueError) as e:
        log.error("VCF_CDS_DATABASE_URL is not a database URL SQLAlchemy can use (%s)", type(e).__name__)
        return False
    try:
        migrate(engine)
    except SQLAlchemyError as e:
        # the driver's message (connection refused, authentication failed…) holds no record data here
        reason = str(getattr(e, "orig", None) or e).splitlines()[0][:300]
        log.error("cannot prepare the database %s: %s: %s", display_url(url), type(e).__name__, reason)
        return False
    finally:
        engine.dispose()
    return True


def run(host: str, port: int, workers: int = DEFAULT_WORKERS, threads: int = DEFAULT_THREADS) -> int:
    try:
        settings = load_settings()
        parse_origins(list(settings["CORS_ORIGINS"]))
    except ValueError as e:
        print(f"vcf-cds serve: {e}", file=sys.stderr)
        return 2
    logs.configure(str(settings["LOG_LEVEL"]))
    from ..smart import startup_refusal

    refusal = check_startup(host, port, settings) or check_audit_key(host) or startup_refusal(settings)
    if refusal:
        log.error(refusal)
        print(f"vcf-cds serve: {refusal}", file=sys.stderr)
        return 2
    # once, in the master: workers then find the schema current. Off: a one-off `vcf-cds migrate`
    # (a Kubernetes Job) owns the schema, and replicas stay not-ready until it is current
    if settings["MIGRATE"] == "on" and not migrate_database(str(settings["DATABASE_URL"])):
        return 1
    owned = prepare_metrics_dir()
    master = os.getpid()
    try:
        proxies = list(settings["TRUSTED_PROXIES"])
        Server(gunicorn_options(host, port, workers, threads, str(settings["LOG_LEVEL"]), proxies)).run()
    finally:
        # workers are forked inside run() and leave through here too: only the master cleans up
        if owned and os.getpid() == master:
            shutil.rmtree(owned, ignore_errors=True)
    return 0
