"""Two ``vcf-cds serve`` instances on one database behind nginx: the parts of the scale-out tests.

``Instance`` is one ``vcf-cds serve`` on a fixed port (a restart comes back where nginx expects it),
in a process group of its own so that ``kill -9`` takes its master and workers at once, as a crash
of the machine or container would. ``balancer`` runs the Debian nginx as an unprivileged process of
this test: a generated configuration in a temporary folder (``-p prefix -c conf``, ``daemon off``,
pid and logs there too), listening on a free loopback port; it is stopped with the test.

nginx passes a request to the other instance when connecting fails (``proxy_next_upstream error
timeout``). For a POST (every hook call and feedback is one) nginx does that only while the request
has not been sent: once an instance may have acted on it, retrying could store or audit it twice,
so nginx answers 502 instead and the EHR decides (feedback items are idempotent, a hook call is
advice). ``non_idempotent`` is deliberately not set. Upstream connections are not kept alive: an
instance that shuts down closes its idle keep-alive connections, and a POST nginx wrote into one of
those just as it closed would count as sent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .served import Served, free_port, http, serve_environment, vcf_cds, wait_until_up
from .tokens import EHR, Signer, claims, ec_signer, issuer_file

NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
HOOK_PATH = "/cds-services/vcf-patient-view"
FEEDBACK_PATH = "/cds-services/vcf-patient-view/feedback"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in NGINX_PATHS if os.access(p, os.X_OK)), None)


@dataclass
class Auth:
    """The EHR of these tests: its signing key and the trusted-issuer file naming its public key."""

    signer: Signer
    issuers: Path
    public_url: str  # the balancer's URL: the `aud` of every token, whichever instance it reaches

    def token(self, path: str) -> str:
        return self.signer.sign(claims(datetime.now(UTC), aud=self.public_url + path, iss=EHR))

    def headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path)}"}


def make_auth(folder: Path, public_url: str) -> Auth:
    signer = ec_signer("scaleout-k1")
    path = folder / "trusted-issuers.json"
    path.write_text(json.dumps(issuer_file({"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}})))
    return Auth(signer, path, public_url)


def instance_environment(port: int, database_url: str, auth: Auth, folder: Path, **extra: str) -> dict[str, str]:
    """A clean environment for one instance, trusting ``auth``'s issuer."""
    settings = {"VCF_CDS_TRUSTED_ISSUERS": str(auth.issuers), "VCF_CDS_PUBLIC_URL": auth.public_url, **extra}
    # two CPUs shared with other work: one worker each, two instances
    return serve_environment(port, database_url, folder, workers=1, threads=4, **settings)


@dataclass
class Instance:
    """One ``vcf-cds serve`` that can be started, stopped (SIGTERM) and killed (SIGKILL), again and again."""

    name: str
    folder: Path
    environment: dict[str, str]
    port: int = field(default_factory=free_port)
    served: Served | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        self.starts += 1
        log_dir = self.folder / f"{self.name}-{self.starts}"
        log_dir.mkdir(parents=True)
        stdout, stderr = log_dir / "access.log", log_dir / "server.log"
        env = {**self.environment, "VCF_CDS_PORT": str(self.port), "TMPDIR": str(log_dir)}
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [vcf_cds(), "serve"], env=env, stdout=out, stderr=err, cwd=log_dir, start_new_session=True
            )
        self.served = Served(process, self.base, stdout, stderr, log_dir)
        wait_until_up(self.served)
        return self.served

    def wait_ready(self, timeout: float = 60) -> None:
        """Until ``/readyz`` says 200: the database reachable and the schema current."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if http("GET", self.base + "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready within {timeout} s: {self.logs()}")

    def stop(self) -> int:
        """SIGTERM (gunicorn's graceful shutdown) and wait; its exit status."""
        assert self.served is not None
        status = self.served.stop()
        self.served.exit_code = status
        return status

    def kill(self) -> None:
        """``kill -9`` of the master and its workers at once (their process group), as a crash."""
        assert self.served is not None
        os.killpg(self.served.master, signal.SIGKILL)
        self.served.process.wait(10)
        # dead for nginx only once the port refuses connections: a killed worker's listening socket
        # takes them into its backlog (and then resets them) until its last thread has exited, which
        # can be after its main thread shows as a zombie
        deadline = time.monotonic() + 10
        while not self.refuses_connections():
            assert time.monotonic() < deadline, f"{self.name} still accepts connections 10 s after SIGKILL"
            time.sleep(0.01)

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        return False

    def running(self) -> bool:
        return self.served is not None and self.served.process.poll() is None

    def logs(self) -> str:
        return self.served.logs() if self.served else ""

    def close(self) -> None:
        if self.served is None or not self.running():
            return
        try:
            self.stop()
        finally:
            if self.running():
                os.killpg(self.served.master, signal.SIGKILL)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 10m;
    # bodies stay in memory: run by root, nginx's workers are `nobody`, who cannot write in this folder
    client_body_buffer_size 10m;

    upstream vcf_cds {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://vcf_cds;
            proxy_set_header Host $http_host;
            # retry on the other instance only where this one cannot have seen the request: for a
            # POST nginx never retries once the request was sent (no `non_idempotent` here)
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def _servers(upstreams: list[Instance], down: frozenset[str] = frozenset()) -> str:
    # max_fails=1 fail_timeout=2s: after a failed connect, an instance is left alone for 2 s only,
    # so that one started again takes its share of the load soon. `down`: drained, sent nothing new
    return "\n".join(
        f"        server 127.0.0.1:{u.port} max_fails=1 fail_timeout=2s{' down' if u.name in down else ''};"
        for u in upstreams
    )


@dataclass
class Balancer:
    process: subprocess.Popen[bytes]
    base: str
    prefix: Path
    port: int = 0
    upstreams: list[Instance] = field(default_factory=list)
    down: frozenset[str] = frozenset()

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def write_conf(self) -> None:
        """The configuration for ``upstreams`` with those in ``down`` marked down, checked by ``nginx -t``."""
        binary = nginx_binary()
        assert binary, "nginx is not installed (Debian package nginx; scripts/setup-system)"
        servers = _servers(self.upstreams, self.down)
        self.conf.write_text(NGINX_CONF.format(prefix=self.prefix, port=self.port, servers=servers))
        checked = subprocess.run([binary, "-t", "-p", str(self.prefix), "-c", str(self.conf)], capture_output=True)
        assert checked.returncode == 0, checked.stderr.decode(errors="replace")

    def drain(self, instance: Instance) -> None:
        """Mark ``instance`` down and reload: new requests go to the others; its calls in flight finish.
        The caller waits until it gets no new requests (old nginx workers finish theirs first)."""
        self.down |= {instance.name}
        self.reload()

    def restore(self, instance: Instance) -> None:
        """Put ``instance`` back into the rotation."""
        self.down -= {instance.name}
        self.reload()

    def reload(self) -> None:
        self.write_conf()
        # what `nginx -s reload` does: SIGHUP to the master, which starts workers with the new
        # configuration and lets the old ones finish their requests
        self.process.send_signal(signal.SIGHUP)

    def error_log(self, tail: int = 4000) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def refused_connects(self) -> int:
        """Connections to an instance refused (nginx then tried the other), from its error log."""
        return self.error_log(tail=10**8).count("connect() failed (111: Connection refused)")

    def access_log(self) -> str:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def balancer(prefix: Path, port: int, upstreams: list[Instance]) -> Iterator[Balancer]:
    """nginx on 127.0.0.1:``port`` in front of ``upstreams``, until the block ends."""
    binary = nginx_binary()
    assert binary, "nginx is not installed (Debian package nginx; scripts/setup-system)"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, servers=_servers(upstreams)))
    checked = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    stderr = (prefix / "stderr.log").open("wb")
    process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)], stderr=stderr, start_new_session=True)
    lb = Balancer(process, f"http://127.0.0.1:{port}", prefix, port, list(upstreams))
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise AssertionError(f"nginx exited with {process.returncode}: {lb.error_log()}")
            try:
                http("GET", lb.base + "/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not answer within 20 s: {lb.error_log()}") from None
                time.sleep(0.1)
        yield lb
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # nginx: graceful shutdown
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        stderr.close()


def migrate(database_url: str) -> None:
    """``vcf-cds migrate``, once, as the Kubernetes Job does before the replicas start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_CDS_")}
    done = subprocess.run(
        [vcf_cds(), "migrate"], env={**env, "VCF_CDS_DATABASE_URL": database_url}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def feedback_body(card: str, outcome: str = "accepted") -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": outcome, "outcomeTimestamp": "2026-06-15T14:00:00Z"}]}
