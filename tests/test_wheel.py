"""An installed (non-editable) wheel carries mappings/ and works away from the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from support.paths import ROOT


def test_wheel_carries_mappings_and_loads_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    [wheel] = tmp_path.glob("vcf_cds-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "service/mappings/valueset-vcf-osteoporotic.json" in names
    assert "service/mappings/codesystem-finding.json" in names
    for asset in ("index.html", "viewer.js", "markdown.js", "viewer.css"):
        assert f"service/devtools/static/viewer/{asset}" in names  # the card viewer at GET /
    assert "service/store/migrations/env.py" in names and "service/store/migrations/script.py.mako" in names
    assert any(n.startswith("service/store/migrations/versions/v0001") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from service.store.db import create_db_engine, migrate; migrate(create_db_engine('sqlite://')); "
        "from service.normalize.terminology import load_terminology; t = load_terminology(); print(len(t.valuesets))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) >= 30
