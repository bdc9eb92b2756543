"""Review aid (issue 20): the SMART app's timeline for records richer than the browser test's fixture 45
(labs, DXA, therapy, findings, several levels), drawn by the same ``figure()`` and plotly.js, as PNGs
in ``artifacts/review-timeline-*.png``. Run: ``.venv/bin/python tests/support/render_timelines.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from service.normalize.fhirtime import parse_fhir_datetime  # noqa: E402
from service.pipeline import Engine  # noqa: E402
from service.smart.evidence import index  # noqa: E402
from service.smart.timeline import figure, figure_json  # noqa: E402
from service.smart.views import PLOTLY_JS  # noqa: E402

FIXTURES = ROOT / "fixtures" / "patient-view"
CHOSEN = (
    "28-row14-synthea-15724005-edema-dxa-therapy.json",
    "33-caution-inr-2-1-icd10-who-system.json",
    "41-caution-more-than-3-levels.json",
    "30-row14-kyphoplasty-height-loss-30.json",
)


def main() -> None:
    engine = Engine.load()
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "needs Debian chromium"
    with tempfile.TemporaryDirectory() as tmp:
        for name in CHOSEN:
            doc = json.loads((FIXTURES / name).read_text())
            now, _ = parse_fhir_datetime(doc["now"], UTC)
            result = engine.evaluate("vcf-patient-view", doc["request"], now=now, new_uuid=lambda: "u", fetch=None)
            assert result.facts and result.assessment and result.record
            fig = figure_json(figure(result.facts, result.assessment, index(result.record.resources)))
            page = Path(tmp) / f"{name}.html"
            page.write_text(
                f'<html><body style="margin:0;width:1200px"><div id="t"></div>'
                f'<script src="file://{PLOTLY_JS}"></script><script>const f={fig};'
                "Plotly.newPlot('t', f.data, f.layout, {displayModeBar:false});</script></body></html>"
            )
            png = out / f"review-timeline-{name.split('-')[0]}.png"
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1200,660",
                    "--virtual-time-budget=5000",
                    f"--screenshot={png}",
                    f"file://{page}",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            print(png)


if __name__ == "__main__":
    main()
