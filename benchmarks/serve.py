"""Serve one benchmark app with the gunicorn settings of ``vcf-cds serve``.

``python -m benchmarks.serve {floor,vcf-cds,naive} --port N``: vcf-cds goes through the production
entry point (``service.server.run``); the floor and the naive app through the same ``Server`` class
and the same ``gunicorn_options``, so workers, threads and worker class are identical.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from service.server import Server, gunicorn_options, run

HOST = "127.0.0.1"


class AppServer(Server):
    def __init__(self, options: dict[str, Any], factory: Callable[[], Any]):
        self.factory = factory
        super().__init__(options)

    def load(self) -> Any:
        return self.factory()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["floor", "vcf-cds", "naive"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.app == "vcf-cds":
        return run(HOST, args.port)
    if args.app == "floor":
        from .floor_app import create_app
    else:
        from .naive_app import create_app
    AppServer(gunicorn_options(HOST, args.port), create_app).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
