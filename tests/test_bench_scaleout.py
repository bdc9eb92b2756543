"""benchmarks/scaleout.py keeps working (tiny mode): it writes its section and keeps the rest of the file.

No timing is asserted: the ratios live in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scaleout import BEGIN, END, TARGETS

from support.paths import ROOT
from support.postgres import POSTGRES_URL

pytestmark = [
    pytest.mark.skipif(not POSTGRES_URL, reason="VCF_CDS_TEST_POSTGRES_URL is unset (bash scripts/with-postgres)"),
    pytest.mark.skipif(
        not (shutil.which("wrk") and (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())),
        reason="wrk or nginx is not installed (Debian packages; scripts/setup-system)",
    ),
]


def test_the_scaleout_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text(f"# Benchmark results\n\nkept\n\n{BEGIN}\nold numbers\n{END}\n\nkept too\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_")}
    env["VCF_CDS_TEST_POSTGRES_URL"] = POSTGRES_URL
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaleout", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Benchmark results\n\nkept\n\n") and text.endswith("\n\nkept too\n")
    section = text.split(BEGIN)[1].split(END)[0]
    assert "old numbers" not in section
    for target in TARGETS:
        row = next(line for line in section.splitlines() if line.startswith(f"| {target} |"))
        assert row.endswith("| 0 |"), row  # no errors
    assert "Two instances ÷ one, both behind nginx" in section
