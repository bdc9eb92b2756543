"""benchmarks/soak.py in its smoke mode: a few seconds of wrk against vcf-cds serve, its checks included.

The soak itself (60 s at ~80 % of the peak) is a benchmark, run by hand; this keeps the script
working. Skips, saying so, where wrk is not installed (scripts/setup-system installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from support.paths import ROOT


def test_the_soak_script_runs_and_its_checks_hold() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian package wrk; scripts/setup-system installs it)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no 5xx; every acknowledged feedback item is in the database" in done.stdout
