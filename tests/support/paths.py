"""Where things are: the repository, the shared specs, the vendored CDS Hooks corpus, the fixtures."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
# vendored copy of ../shared/conformance/cds-hooks (sources and licences in its README.md)
CONFORMANCE = ROOT / "tests" / "data" / "cds-hooks"
FIXTURES = ROOT / "fixtures"
# the golden fixture of decision row 14, which the CLI and server tests replay
ROW14 = next((FIXTURES / "patient-view").glob("27-*.json"))
