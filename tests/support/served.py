"""``vcf-cds serve`` — the production server, gunicorn — run by a test on 127.0.0.1 and stopped by its pid.

``serving(tmp_path, database_url, workers=…, env={…})`` starts it with a clean environment (none of
the developer's ``VCF_CDS_*`` settings), waits for ``/healthz`` and, on leaving, stops it with
SIGTERM (a graceful shutdown), or SIGKILL if that does not end it in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.http.server import GRACEFUL_SECONDS

from .apps import TEST_AUDIT_KEY

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, timeout: float = 10, **headers: str) -> tuple[int, bytes]:
    """One request with urllib (``requests`` is mocked in tests); the status and body, errors included."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    stdout: Path  # the access log
    stderr: Path  # everything else
    tmp_path: Path  # its working directory and TMPDIR (the Prometheus multiprocess folder is made there)
    exit_code: int | None = None  # once stopped

    @property
    def master(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        """The worker processes: the master's children, from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process just ended
                continue
            if int(fields[1]) == self.master and fields[0] != "Z":
                children.append(int(stat.parent.name))
        return sorted(children)

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it overruns. The exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=GRACEFUL_SECONDS + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError("vcf-cds serve did not stop within its graceful timeout") from None


def wait_until_up(served: Served) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(f"vcf-cds serve exited with {served.process.returncode}: {served.logs()}")
        try:
            if http("GET", served.base + "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"vcf-cds serve did not answer within {STARTUP_SECONDS} s: {served.logs()}")


def vcf_cds() -> str:
    executable = shutil.which("vcf-cds", path=str(Path(sys.executable).parent))
    assert executable, "the vcf-cds command is not installed beside this Python (bash scripts/setup)"
    return executable


def serve_environment(
    port: int, database_url: str, folder: Path, *, workers: int = 1, threads: int = 4, **settings: str
) -> dict[str, str]:
    """A clean environment for ``vcf-cds serve`` (none of the developer's settings), ``settings`` on top."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment.update(
        {
            "VCF_CDS_HOST": "127.0.0.1",
            "VCF_CDS_PORT": str(port),
            "VCF_CDS_DATABASE_URL": database_url,
            "VCF_CDS_AUDIT_KEY": TEST_AUDIT_KEY,
            "VCF_CDS_WORKERS": str(workers),
            "VCF_CDS_THREADS": str(threads),
            # no fhirServer but this closed loopback port may be contacted: generated requests name any host
            "VCF_CDS_FHIR_ALLOWLIST": "http://127.0.0.1:9/fhir",
            "VCF_CDS_FHIR_TIMEOUT": "1",
            "TMPDIR": str(folder),
            **settings,
        }
    )
    return environment


@contextmanager
def serving(
    tmp_path: Path, database_url: str, *, workers: int = 1, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[Served]:
    executable = vcf_cds()
    port = free_port()
    environment = serve_environment(port, database_url, tmp_path, workers=workers, threads=threads, **(env or {}))
    stdout, stderr = tmp_path / "access.log", tmp_path / "server.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([executable, "serve"], env=environment, stdout=out, stderr=err, cwd=tmp_path)
    served = Served(process, f"http://127.0.0.1:{port}", stdout, stderr, tmp_path)
    try:
        wait_until_up(served)
        yield served
    finally:
        served.exit_code = served.stop()
