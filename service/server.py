"""``vcf-cds serve``: the production server (gunicorn) around ``create_app``."""

from __future__ import annotations

import gc
from typing import Any

from gunicorn.app.base import BaseApplication

DEFAULT_WORKERS = 2
DEFAULT_THREADS = 4


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from . import create_app

        return create_app()


def freeze_startup_heap(worker: Any = None) -> None:
    """Keep what a worker loaded at start-up out of every later garbage collection (gunicorn's
    ``post_worker_init``).

    The value sets, Flask and the fhir.resources models live as long as the worker. Left in the
    collected generations, each full collection walks them all, and a large request body (a
    10,000-resource record is ~1M objects) triggers several: ~1/3 of the time of such a request.
    """
    gc.collect()
    gc.freeze()


def gunicorn_options(
    host: str, port: int, workers: int = DEFAULT_WORKERS, threads: int = DEFAULT_THREADS
) -> dict[str, Any]:
    """The gunicorn settings of ``vcf-cds serve`` (the benchmarks run their baselines with these too)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": 20,
        "timeout": 30,
        "post_worker_init": freeze_startup_heap,
        "accesslog": "-",
        # no query strings, no bodies: request line without "?…" is %(U)s
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms',
    }


def run(host: str, port: int, workers: int = DEFAULT_WORKERS, threads: int = DEFAULT_THREADS) -> int:
    Server(gunicorn_options(host, port, workers, threads)).run()
    return 0
