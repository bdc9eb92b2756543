"""The ``vcf-cds`` command: serve, replay, check-mappings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vcf-cds", description="CDS Hooks service for vertebral compression fractures"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4)

    replay = sub.add_parser("replay", help="run requests, bundles or fixtures through the service")
    replay.add_argument("paths", nargs="+")
    replay.add_argument("--service", help="service id (default: from the request's hook)")
    replay.add_argument("--now", help="ISO date-time to evaluate at (default: the fixture's, else now)")
    replay.add_argument("--json", action="store_true", help="print the exact responses as JSON")

    sub.add_parser("check-mappings", help="validate every value set; report codes claimed twice")

    args = parser.parse_args(argv)
    if args.command == "serve":
        from .server import run

        return run(args.host, args.port, args.workers, args.threads)
    if args.command == "replay":
        return run_replay(args.paths, args.service, args.now, args.json)
    return check_mappings()


def run_replay(paths: Sequence[str], service: str | None, now: str | None, as_json: bool) -> int:
    import time

    from . import create_app
    from .console import Style, outcome_lines, summary_line, wants_colour
    from .replay import Outcome, expand, replay_file

    # in-process, never on the network: the caller is the local user, not an EHR
    app = create_app({"DATABASE_URL": "sqlite://", "AUTH": "off"})
    style = Style(wants_colour(sys.stdout))
    files = list(expand(paths))
    # one file: every card in full; a folder: a line per card, in full only where a fixture fails
    detail = len(files) == 1
    # a transient "[k/N] file" on a terminal's stderr while a (large) bundle is evaluated
    progress = not as_json and len(files) > 1 and sys.stderr.isatty()
    outcomes: list[Outcome] = []
    results: list[dict[str, Any]] = []
    unreadable = 0
    started = time.perf_counter()
    for n, path in enumerate(files, 1):
        if progress:
            sys.stderr.write(f"\r\033[K[{n}/{len(files)}] {path} …")
            sys.stderr.flush()
        try:
            outcome = replay_file(app, path, service, now)
        except (ValueError, OSError, orjson.JSONDecodeError) as e:
            unreadable += 1
            _clear(progress)
            print(f"{path}: cannot replay: {e}", file=sys.stderr)
            continue
        _clear(progress)
        outcomes.append(outcome)
        if as_json:
            results.append(
                {
                    "file": str(path),
                    "status": outcome.status,
                    "response": outcome.body,
                    "matched": None if not outcome.checked else not outcome.problems,
                }
            )
        else:
            print("\n".join(outcome_lines(outcome, n, len(files), style, detail=detail)))
    if as_json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif len(files) > 1:
        print(summary_line(outcomes, len(files), unreadable, time.perf_counter() - started, style))
    failed = unreadable + sum(bool(o.mismatches) for o in outcomes)
    return 1 if failed else 0


def _clear(progress: bool) -> None:
    if progress:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def check_mappings() -> int:
    import os
    from pathlib import Path

    from fhir.resources.R4B.codesystem import CodeSystem
    from fhir.resources.R4B.valueset import ValueSet
    from pydantic import ValidationError

    from .terminology import MappingError, load_terminology, overlaps, shipped_mappings_dir

    folders = [shipped_mappings_dir()]
    if os.environ.get("VCF_CDS_EXTRA_MAPPINGS"):
        folders.append(Path(os.environ["VCF_CDS_EXTRA_MAPPINGS"]))
    errors = 0
    count = 0
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            doc = orjson.loads(path.read_bytes())
            model: Any = {"ValueSet": ValueSet, "CodeSystem": CodeSystem}.get(doc.get("resourceType"))
            if model is None:
                continue
            count += 1
            try:
                model.model_validate(doc)
            except ValidationError as e:
                errors += 1
                print(f"INVALID {path}: {e.errors()[0]['loc']} {e.errors()[0]['msg']}")
    try:
        terminology = load_terminology(folders[1] if len(folders) > 1 else None)
    except MappingError as e:
        print(f"INVALID {e}")
        return 1
    shared = overlaps(terminology)
    for (system, code), ids in sorted(shared.items()):
        print(f"shared  {system}|{code}: {', '.join(ids)}")
    print(
        f"{count} resources, {len(terminology.valuesets)} value sets, {errors} invalid, "
        f"{len(shared)} codes in several value sets"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
