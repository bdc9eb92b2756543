"""sekmet-fhir (PyPI, pinned in the ``test`` extra) as a real FHIR server process on loopback, and plain
urllib calls to it (not requests, which the unit tests mock): shared by tests/test_fhir_integration.py
and the SMART app's test EHR (support/smart_ehr.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STARTUP_SECONDS = 60


def sekmet_executable() -> str | None:
    return shutil.which("sekmet", path=str(Path(sys.executable).parent))


def launch(executable: str, folder: Path, port: int, settings: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
    """sekmet-fhir started with ``settings`` on loopback ``port``; the process and its log file."""
    config = folder / "settings.yaml"
    config.write_text(json.dumps(settings))  # YAML is a superset of JSON
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [executable, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SEKMET_CONFIG": str(config)},
        )
    return process, log


def wait_until_up(process: subprocess.Popen[bytes], base: str) -> bool:
    """Whether the server at FHIR ``base`` answers its CapabilityStatement within STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/metadata", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def fhir_call(base: str, method: str, path: str, body: Any, token: str) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}/{path}".rstrip("/"), data=data, method=method)
    req.add_header("Content-Type", "application/fhir+json")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as response:
        return json.loads(response.read())
