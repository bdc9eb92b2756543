"""The ``vcf-cds`` command: serve, migrate, replay, check-mappings, feedback-report, prune-audit, healthcheck,
audit-hash."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from .store.db import Database

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vcf-cds", description="CDS Hooks service for vertebral compression fractures"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve_cmd = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve_cmd.add_argument("--host", help="address to bind (default: VCF_CDS_HOST, else 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port (default: VCF_CDS_PORT, else 8080)")
    serve_cmd.add_argument("--workers", type=int, help="worker processes (default: VCF_CDS_WORKERS, else 2)")
    serve_cmd.add_argument("--threads", type=int, help="threads per worker (default: VCF_CDS_THREADS, else 4)")

    sub.add_parser("migrate", help="create or upgrade the database schema, then exit (VCF_CDS_DATABASE_URL)")

    replay = sub.add_parser("replay", help="run requests, bundles or fixtures through the service")
    replay.add_argument("paths", nargs="+")
    replay.add_argument("--service", help="service id (default: from the request's hook)")
    replay.add_argument("--now", help="ISO date-time to evaluate at (default: the fixture's, else now)")
    replay.add_argument("--json", action="store_true", help="print the exact responses as JSON")

    sub.add_parser("check-mappings", help="validate every value set; report codes claimed twice")

    report = sub.add_parser("feedback-report", help="acceptance and override rates per recommendation")
    report.add_argument("--json", action="store_true", help="print the report as JSON")

    prune = sub.add_parser("prune-audit", help="delete audit rows (and their cards' feedback) past a retention")
    prune.add_argument("--older-than", type=int, required=True, metavar="DAYS", help="retention in days (≥ 1)")

    sub.add_parser("healthcheck", help="exit 0 if the local server answers /healthz (container HEALTHCHECK)")

    audit_hash = sub.add_parser("audit-hash", help="the audit log's hash of a patient id (VCF_CDS_AUDIT_KEY)")
    audit_hash.add_argument("patient_id")

    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except BadSettingsError:
        return 2


class BadSettingsError(Exception):
    """A VCF_CDS_* value is malformed; already reported on stderr."""


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return serve(args.host, args.port, args.workers, args.threads)
    if args.command == "migrate":
        return run_migrate()
    if args.command == "replay":
        return run_replay(args.paths, args.service, args.now, args.json)
    if args.command == "feedback-report":
        return run_feedback_report(args.json)
    if args.command == "prune-audit":
        return run_prune_audit(args.older_than)
    if args.command == "healthcheck":
        return healthcheck()
    if args.command == "audit-hash":
        return print_audit_hash(args.patient_id)
    return check_mappings()


def settings_or_exit() -> dict[str, Any]:
    from .config import load_settings

    try:
        return load_settings()
    except ValueError as e:
        print(f"vcf-cds: {e}", file=sys.stderr)
        raise BadSettingsError from None


def serve(host: str | None, port: int | None, workers: int | None, threads: int | None) -> int:
    from .http.server import run

    settings = settings_or_exit()
    return run(
        host or str(settings["HOST"]),
        port or int(settings["PORT"]),
        workers or int(settings["WORKERS"]),
        threads or int(settings["THREADS"]),
    )


def run_migrate() -> int:
    from .http.server import migrate_database
    from .observe import logs

    settings = settings_or_exit()
    logs.configure(str(settings["LOG_LEVEL"]))
    return 0 if migrate_database(str(settings["DATABASE_URL"])) else 1


def run_feedback_report(as_json: bool) -> int:
    from .store.feedback import feedback_report, format_report

    report = _on_database("read", feedback_report)
    if report is None:
        return 1
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_report(report))
    return 0


def run_prune_audit(days: int) -> int:
    from datetime import timedelta

    from .store.db import utcnow
    from .store.retention import prune_audit

    if days < 1:
        print("vcf-cds prune-audit: --older-than must be at least 1 (days)", file=sys.stderr)
        return 2
    try:
        before = utcnow() - timedelta(days=days)
    except OverflowError:  # before the year 1: no calendar date to compare with
        print(f"vcf-cds prune-audit: --older-than {days} days reaches before the year 1", file=sys.stderr)
        return 2
    pruned = _on_database("prune", lambda database: prune_audit(database.engine, before))
    if pruned is None:
        return 1
    print(
        f"deleted {pruned.audit_rows} audit rows, {pruned.issued_cards} issued cards and "
        f"{pruned.feedback_items} feedback items older than {before.isoformat(timespec='seconds')}"
    )
    return 0


def _on_database(verb: str, work: Callable[[Database], T]) -> T | None:
    """``work`` on VCF_CDS_DATABASE_URL's database once its tables are found there; None (said on
    stderr, ``verb`` naming what could not be done) if they are not, or the database fails."""
    from sqlalchemy.exc import SQLAlchemyError

    from .store.db import Database, display_url, has_schema

    url = str(settings_or_exit()["DATABASE_URL"])
    database = None
    try:
        database = Database(url)
        if not has_schema(database.engine):
            print(f"{display_url(url)} holds no vcf-cds tables: is VCF_CDS_DATABASE_URL right?", file=sys.stderr)
            return None
        return work(database)
    except SQLAlchemyError as e:
        print(f"cannot {verb} {display_url(url)}: {type(e).__name__}", file=sys.stderr)
        return None
    finally:
        if database is not None:
            database.engine.dispose()  # its pooled connections closed now, not whenever they are collected


def healthcheck() -> int:
    import urllib.request

    settings = settings_or_exit()
    host = str(settings["HOST"])
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    try:
        with urllib.request.urlopen(f"http://{host}:{settings['PORT']}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as e:
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1


def print_audit_hash(patient_id: str) -> int:
    from .store.audit import AuditKey

    key = str(settings_or_exit()["AUDIT_KEY"])
    if not key:
        print("VCF_CDS_AUDIT_KEY is not set: the hashes in the audit log cannot be reproduced.", file=sys.stderr)
        return 1
    audit_key = AuditKey.from_setting(key)
    print(f"{audit_key.hash(patient_id)}  (key id {audit_key.key_id})")
    return 0


def run_replay(paths: Sequence[str], service: str | None, now: str | None, as_json: bool) -> int:
    import time

    from . import create_app
    from .devtools.console import Style, outcome_lines, summary_line, wants_colour
    from .devtools.replay import Outcome, expand, replay_file

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

    from .normalize.terminology import MappingError, load_terminology, overlaps, shipped_mappings_dir

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
