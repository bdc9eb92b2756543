"""The rules are pure: enforced by walking imports, not only written down (STYLE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "service"
# the I/O stages as a whole, not only their modules that do I/O today
FORBIDDEN = (
    "flask",
    "werkzeug",
    "requests",
    "sqlalchemy",
    "gunicorn",
    "service.gather",
    "service.http",
    "service.store",
    "service.auth",
    "service.smart",
)


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "service":
        return None
    base = SERVICE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names if module_path(f"{mod}.{a.name}")}
    return found


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        todo += imports_of(path, package)
    return seen


def test_decide_reaches_no_io() -> None:
    reached = reachable("service.decide")
    assert "service.decide.rules" in reached  # the walk really follows the package
    bad = sorted(m for m in reached if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert bad == [], f"service.decide reaches I/O modules: {bad}"


def test_rules_read_no_clock_and_make_no_ids() -> None:
    for path in (SERVICE / "decide").glob("*.py"):
        source = path.read_text()
        assert not re.search(r"\b(datetime\.now|date\.today|time\.time|uuid4|random)\b", source), path.name


def test_the_walk_would_catch_a_violation() -> None:
    # the API layer does reach Flask: the same walk must say so
    assert any(m.startswith("flask") for m in reachable("service.http.api"))


def test_only_the_outbound_edges_import_requests() -> None:
    # the FHIR client (gather's fallback), the JWKS fetcher of auth, and the SMART app's calls to the
    # EHR (discovery, JWK Set, Observation create, and the sessions Authlib's token exchange uses),
    # and the watched-socket adapter the first and last share: nothing else talks HTTP out
    importers = sorted(
        str(path.relative_to(SERVICE))
        for path in SERVICE.rglob("*.py")
        if any(m == "requests" or m.startswith("requests.") for m in imports_of(path, "service"))
    )
    assert importers == ["auth/jwks.py", "gather/fhirclient.py", "gather/watched.py", "smart/http.py"]
