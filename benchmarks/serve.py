"""Serve one benchmark app with the gunicorn settings of ``vcf-cds serve``.

``python -m benchmarks.serve {floor,vcf-cds,vcf-cds-unaudited,naive} --port N``: vcf-cds goes
through the production entry point (``service.http.server.run``); the floor and the naive app through the
same ``Server`` class and the same ``gunicorn_options``, so workers, threads and worker class are
identical.

``vcf-cds-unaudited`` is an ablation, not a way to run the service: vcf-cds with its audit writer
replaced by one that keeps nothing, to measure in the same run what the durable audit row of each
call (its transaction, inserts and fsync before the answer) costs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from service.http.server import Server, gunicorn_options, run
from service.state import app_state

HOST = "127.0.0.1"


class AppServer(Server):
    def __init__(self, options: dict[str, Any], factory: Callable[[], Any]):
        self.factory = factory
        super().__init__(options)

    def load(self) -> Any:
        return self.factory()


class DiscardedAuditRows:
    """The audit writer of the ablation: every row is dropped, nothing waits for a database."""

    def submit(self, rows: Any) -> None:
        return None


def without_audit_writes() -> None:
    """Make every vcf-cds worker this process forks drop its audit rows (the ablation)."""
    load = Server.load

    def load_unaudited(self: Server) -> Any:
        app = load(self)
        app_state(app).audit_writer = DiscardedAuditRows()
        return app

    Server.load = load_unaudited  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["floor", "vcf-cds", "vcf-cds-unaudited", "naive"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.app == "vcf-cds-unaudited":
        without_audit_writes()
    if args.app.startswith("vcf-cds"):
        return run(HOST, args.port)
    if args.app == "floor":
        from .floor_app import create_app
    else:
        from .naive_app import create_app
    AppServer(gunicorn_options(HOST, args.port), create_app).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
