"""The ``vcf-cds`` command: serve, replay, check-mappings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from .server import DEFAULT_THREADS, DEFAULT_WORKERS

STATUS_MARK = {"met": "+", "not-met": "-", "unknown": "?"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vcf-cds", description="CDS Hooks service for vertebral compression fractures"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    serve.add_argument("--threads", type=int, default=DEFAULT_THREADS)

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
    from . import create_app
    from .replay import expand, replay_file

    app = create_app({"DATABASE_URL": "sqlite://"})
    failed = 0
    results: list[dict[str, Any]] = []
    files = list(expand(paths))
    for n, path in enumerate(files, 1):
        try:
            outcome = replay_file(app, path, service, now)
        except (ValueError, OSError, orjson.JSONDecodeError) as e:
            failed += 1
            print(f"{path}: cannot replay: {e}", file=sys.stderr)
            continue
        failed += bool(outcome.problems)
        if as_json:
            results.append(
                {
                    "file": str(path),
                    "status": outcome.status,
                    "response": outcome.body,
                    "matched": None if not outcome.checked else not outcome.problems,
                }
            )
            continue
        verdict = "" if not outcome.checked else (" FAIL" if outcome.problems else " ok")
        print(f"[{n}/{len(files)}] {path}: HTTP {outcome.status}{verdict} ({outcome.seconds * 1000:.0f} ms)")
        for card in outcome.body.get("cards", []):
            print(f"  [{card['indicator'].upper()}] {card['summary']}")
            ext = card.get("extension", {}).get("org.vcfcds", {})
            for c in ext.get("criteria", []):
                print(f"      {STATUS_MARK[c['status']]} {c['id']}: {c['status']} {', '.join(c['evidence'])}")
            if ext.get("cautions"):
                print(f"      cautions: {', '.join(ext['cautions'])}")
            if ext.get("missing"):
                print(f"      missing: {', '.join(ext['missing'])}")
        if outcome.status != 200:
            issues = outcome.body.get("issue", [{}])
            print(f"  {issues[0].get('diagnostics', '')}")
        for problem in outcome.problems:
            print(f"  MISMATCH {problem}")
    if as_json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif len(files) > 1:
        print(f"{len(files) - failed} of {len(files)} files ok")
    return 1 if failed else 0


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
