"""Issue 16, parts 2 and 3: where the FHIR fallback may connect, tried with real sockets on loopback.

A tiny FHIR server (``Fhir``) answers on 127.0.0.1; ``Trap`` is a listening socket on another port
that must never see a connection (it is checked with a non-blocking ``accept``: the kernel completes
a connection into the backlog whether or not anyone accepts it). ``responses`` passes every request
through here, so what would have left really leaves.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import responses
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from service import create_app
from service.auth.issuers import IssuerConfigError, parse_issuers
from service.auth.jwks import JwksError, fetch_jwks
from service.gather.egress import public_address
from service.gather.fhirclient import FhirClient, Limits
from service.gather.origins import UrlRefusedError, check_url
from service.gather.prefetch import FetchFailure
from service.state import app_state

from support.builders import ICD10CM, PATIENT_ID, bundle, condition, pain, request
from support.clock import NOW
from support.examples import examples
from support.served import http, serving
from support.tokens import EHR, PUBLIC_URL, SERVICE_URL, claims, ec_signer, issuer_file

VCF = condition("c1", ICD10CM, "M80.08XA")
NOT_PERMITTED = "fhirServer is not permitted for this EHR; it was not contacted"
UNREACHABLE = "the FHIR server could not be reached"
QUERY = f"Condition?patient={PATIENT_ID}"


class Fhir(socketserver.ThreadingTCPServer):
    """Answers every GET with an empty searchset, or with a 302 to ``location`` when one is set."""

    daemon_threads = True
    allow_reuse_address = True
    location: str | None = None
    hits = 0


class FhirHandler(socketserver.StreamRequestHandler):
    server: Fhir

    def handle(self) -> None:
        try:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.server.hits += 1
            if self.server.location is not None:
                head = f"HTTP/1.1 302 Found\r\nLocation: {self.server.location}\r\nContent-Length: 0\r\n"
                self.wfile.write(f"{head}Connection: close\r\n\r\n".encode())
                return
            body = orjson.dumps(bundle(VCF))
            self.wfile.write(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
        except OSError:
            pass


class Trap:
    """A port that must never be connected to."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def connections(self) -> int:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1


@pytest.fixture(scope="module")
def fhir() -> Iterator[Fhir]:
    server = Fhir(("127.0.0.1", 0), FhirHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    made = Trap()
    yield made
    made.sock.close()


@pytest.fixture(autouse=True)
def really_connect(fhir_mock: responses.RequestsMock, fhir: Fhir) -> None:
    fhir_mock.add_passthru(re.compile(".*", re.DOTALL))  # nothing simulated: every request really leaves
    fhir.location = None


def base(fhir: Fhir) -> str:
    return f"http://127.0.0.1:{fhir.server_address[1]}/fhir"


def hook_call(server: str, *fetch: str) -> dict[str, Any]:
    body = request(VCF, pain("o1", 7))
    for key in fetch:
        del body["prefetch"][key]
    body["fhirServer"] = server
    body["fhirAuthorization"] = {"access_token": "origin-test-token", "token_type": "Bearer", "expires_in": 300}
    return body


def diagnostics(response: Any) -> str:
    assert response.status_code == 412, response.get_data(as_text=True)
    return str(response.get_json()["issue"][0]["diagnostics"])


@pytest.fixture
def dev_client(engine: Any) -> Iterator[FlaskClient]:
    """The loopback development mode (no trusted issuers, calls from loopback)."""
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "FHIR_TIMEOUT": 1.0})
    yield app.test_client()
    app_state(app).fetch.close()


# --- part 2: one parser -------------------------------------------------------------------------


def backslash_attack(trap: Trap, fhir: Fhir, path: str = "/fhir/Condition?page=2") -> str:
    """What urlsplit reads as userinfo + the FHIR server, and urllib3 as the trap's port."""
    return f"http://127.0.0.1:{trap.port}\\@127.0.0.1:{fhir.server_address[1]}{path}"


def test_a_redirect_that_parsers_read_differently_is_not_followed(
    dev_client: FlaskClient, fhir: Fhir, trap: Trap
) -> None:
    fhir.location = backslash_attack(trap, fhir)
    text = diagnostics(dev_client.post("/cds-services/vcf-patient-view", json=hook_call(base(fhir), "conditions")))
    assert "redirect to another origin; not followed" in text
    assert trap.connections() == 0


def test_a_prefetched_next_link_that_parsers_read_differently_is_not_followed(
    engine: Any, fhir: Fhir, trap: Trap
) -> None:
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "FHIR_ALLOWLIST": [base(fhir)]})
    body = hook_call(base(fhir))
    body["prefetch"]["conditions"] = bundle()
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": backslash_attack(trap, fhir)}]
    text = diagnostics(app.test_client().post("/cds-services/vcf-patient-view", json=body))
    assert "next link is not on fhirServer; not followed" in text
    assert trap.connections() == 0


HOSTS = ["127.0.0.1", "localhost", "LOCALHOST", "127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1", "[::1]"]
HOSTS += [
    "[::ffff:127.0.0.1]",
    "127.0.0.1.",
    "%31%32%37.0.0.1",
    "127.0.0.1%00",
    "\u24db\u24de\u24d2alhost",
    "127。0.0.1",
]
SEPARATORS = ["/", "\\", "\\@127.0.0.1:{fhir}/", "@127.0.0.1:{fhir}/", "%5C@127.0.0.1:{fhir}/", "#@x/", "?@x/"]
SEPARATORS += [" /", "\t/", "\r\n/", ":{fhir}/", "/..\\", "%2f%2e%2e/"]


@st.composite
def url_forms(draw: st.DrawFn) -> str:
    """URLs built around the FHIR server's and the trap's ports, in the forms parsers disagree on."""
    scheme = draw(st.sampled_from(["http", "HTTP", "https", "hTTp", " http"]))
    userinfo = draw(st.sampled_from(["", "u@", "127.0.0.1:{fhir}@", "127.0.0.1:{trap}@", "u:p@", "\\@", "%40"]))
    host = draw(st.sampled_from(HOSTS))
    port = draw(st.sampled_from(["{fhir}", "{trap}", "0{trap}", "{trap}.", " {trap}", "+{trap}", "", "65536"]))
    separator = draw(st.sampled_from(SEPARATORS))
    tail = draw(st.text(alphabet="/\\@:?#%.aA09 ", max_size=6))
    return f"{scheme}://{userinfo}{host}{':' if port else ''}{port}{separator}{tail}fhir/Condition"


@examples(150)
@given(form=url_forms())
def test_no_request_leaves_for_an_origin_other_than_the_one_checked(form: str, fhir: Fhir, trap: Trap) -> None:
    # As a redirect and as a prefetched next link: the FHIR server's own origin may be asked, the trap never
    url = form.format(fhir=fhir.server_address[1], trap=trap.port)
    client = FhirClient(limits=Limits(budget=1.0), workers=1, loopback_dev=True)
    try:
        fhir.location = url
        client(hook_call(base(fhir)), {"conditions": QUERY})
        fhir.location = None
        client(hook_call(base(fhir)), {"conditions": url})
    finally:
        client.close()
        fhir.location = None
    assert trap.connections() == 0, url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1\\@127.0.0.1:2/",
        "http://u:p@ehr.example.org/",
        "http://ehr.example.org%2fevil.net/",
        "http://ehr.example.org./",
        "http://127.1/",
        "http://[fe80::1%25eth0]/",
        "http://ehr.example.org /",
        "http://ex\u00e4mple.org/",
        "javascript://ehr.example.org/",
    ],
)
def test_urls_parsers_could_read_differently_are_refused(url: str) -> None:
    with pytest.raises(UrlRefusedError):
        check_url(url)


def test_jwks_url_and_jku_must_be_read_alike_by_every_parser() -> None:
    entry = {"iss": EHR, "jwks_url": "https://127.0.0.1:1\\@keys.example.org/jwks.json"}
    with pytest.raises(IssuerConfigError, match="jwks_url"):
        parse_issuers(issuer_file(entry))
    with pytest.raises(IssuerConfigError, match=r"jku\[0\]"):
        parse_issuers(issuer_file({"iss": EHR, "jku": ["https://keys.example.org@evil.example.net/jwks.json"]}))
    with pytest.raises(JwksError, match="not a usable URL"):
        fetch_jwks("http://127.0.0.1:1\\@127.0.0.1:2/jwks.json")


# --- part 3: the server a call may name, the address it may reach -------------------------------


@pytest.mark.parametrize(
    "server",
    ["https://fhir.example.net/r4", "http://169.254.169.254/latest/meta-data", "http://10.0.0.5/fhir", "http://[::]/"],
)
def test_development_mode_names_loopback_or_the_allowlist_only(
    dev_client: FlaskClient, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[object] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: asked.append(a) or [])
    text = diagnostics(dev_client.post("/cds-services/vcf-patient-view", json=hook_call(server, "conditions")))
    assert NOT_PERMITTED in text and asked == []  # not even a name lookup


def test_auth_off_allows_the_allowlist_only(engine: Any, fhir: Fhir) -> None:
    app = create_app({"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "AUTH": "off"})
    hits = fhir.hits
    text = diagnostics(
        app.test_client().post("/cds-services/vcf-patient-view", json=hook_call(base(fhir), "conditions"))
    )
    assert NOT_PERMITTED in text and fhir.hits == hits


def signed_app(engine: Any, signer: Any, fhir_servers: list[str], other_servers: list[str]) -> FlaskClient:
    registry = parse_issuers(
        issuer_file(
            {"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}, "fhirServers": fhir_servers},
            {
                "iss": "https://other-ehr.example.org",
                "jwks": {"keys": [signer.public_jwk()]},
                "fhirServers": other_servers,
            },
        )
    )
    config = {"TESTING": True, "ENGINE": engine, "CLOCK": lambda: NOW, "ISSUERS": registry, "PUBLIC_URL": PUBLIC_URL}
    return create_app(config).test_client()


def test_with_authentication_fhir_server_must_be_one_of_the_issuers(engine: Any, fhir: Fhir, trap: Trap) -> None:
    signer = ec_signer("k1")
    trap_base = f"http://127.0.0.1:{trap.port}/fhir"
    client = signed_app(engine, signer, [base(fhir) + "/"], [trap_base])

    def call(server: str) -> Any:
        headers = {"Authorization": f"Bearer {signer.sign(claims(NOW, aud=SERVICE_URL))}"}
        return client.post("/cds-services/vcf-patient-view", json=hook_call(server, "conditions"), headers=headers)

    assert call(base(fhir)).status_code == 200  # its own server, on loopback: listed, so allowed
    # another issuer's server, and a loopback one no list names: refused before any connection
    assert NOT_PERMITTED in diagnostics(call(trap_base))
    assert NOT_PERMITTED in diagnostics(call(f"http://localhost:{trap.port}/fhir"))
    assert trap.connections() == 0


def test_issuer_fhir_servers_are_checked_at_start() -> None:
    for bad in (["https://ehr.example.org/fhir?x=1"], ["https://u@ehr.example.org/"], "https://ehr.example.org/"):
        with pytest.raises(IssuerConfigError, match="fhirServers"):
            parse_issuers(issuer_file({"iss": EHR, "jwks_url": "https://ehr.example.org/jwks", "fhirServers": bad}))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("::ffff:8.8.8.8", True),
    ],
)
def test_public_address(address: str, public: bool) -> None:
    assert public_address(ipaddress.ip_address(address)) is public


def test_a_loopback_name_resolving_elsewhere_is_not_connected(
    dev_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "localhost" is allowed in development mode as a loopback name: what it resolves to must be loopback
    connected: list[object] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda s, a: connected.append(a) or real_connect(s, a))
    for address in ("169.254.169.254", "10.0.0.5", "::ffff:169.254.169.254", "fe80::1"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, 80, 0, 0) if family == socket.AF_INET6 else (address, 80)
        answer = [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *a, answer=answer, **k: answer)
        body = hook_call("http://localhost/fhir", "conditions")
        assert diagnostics(dev_client.post("/cds-services/vcf-patient-view", json=body)).endswith(UNREACHABLE)
    assert connected == []


def test_the_checked_address_is_the_one_connected(engine: Any, fhir: Fhir, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the first answer is the FHIR server, every later one the metadata address
    port = fhir.server_address[1]
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "fhir.hospital.test":
            return real(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    server = f"http://fhir.hospital.test:{port}/fhir"
    client = FhirClient([server], limits=Limits(budget=2.0), workers=1)
    try:
        assert client(hook_call(server), {"conditions": QUERY})["conditions"] == [VCF]
    finally:
        client.close()
    assert lookups == ["fhir.hospital.test"]  # one lookup, and the connection went where it said


def test_a_name_that_resolves_too_slowly_is_given_up_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(5) or [])
    client = FhirClient(["http://slow-dns.test/fhir"], limits=Limits(budget=0.5), workers=1)
    started = time.monotonic()
    try:
        result = client(hook_call("http://slow-dns.test/fhir"), {"conditions": QUERY})["conditions"]
    finally:
        client.close()
    assert time.monotonic() - started < 2.5
    assert isinstance(result, FetchFailure) and result.reason.endswith(UNREACHABLE)


def test_closed_silent_and_unresolvable_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = Trap()
    closed.sock.close()  # nothing listens there now
    silent = Trap()  # connections complete into the backlog; nothing ever answers
    real = socket.getaddrinfo

    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "no-such-host.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    servers = [
        f"http://127.0.0.1:{closed.port}/fhir",
        f"http://127.0.0.1:{silent.port}/fhir",
        "http://no-such-host.test/fhir",
    ]
    client = FhirClient(servers, limits=Limits(budget=0.5), workers=1)
    try:
        reasons = {client(hook_call(s), {"conditions": QUERY})["conditions"].reason for s in servers}
    finally:
        client.close()
        silent.sock.close()
    assert reasons == {f"Condition search: {UNREACHABLE}"}


# --- against vcf-cds serve ----------------------------------------------------------------------


def test_served_redirect_and_server_binding(tmp_path: Any, fhir: Fhir, trap: Trap) -> None:
    env = {"VCF_CDS_FHIR_ALLOWLIST": base(fhir)}
    with serving(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", env=env) as served:
        url = served.base + "/cds-services/vcf-patient-view"
        fhir.location = backslash_attack(trap, fhir)
        status, raw = http("POST", url, hook_call(base(fhir), "conditions"))
        assert status == 412 and b"redirect to another origin" in raw
        fhir.location = None
        for server in ("http://169.254.169.254/latest/meta-data", "https://fhir.example.net/r4"):
            status, raw = http("POST", url, hook_call(server, "conditions"))
            assert status == 412 and NOT_PERMITTED.encode() in raw
        status, _ = http("POST", url, hook_call(base(fhir), "conditions"))
        assert status == 200
    assert trap.connections() == 0


# --- review findings ------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", ["64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::1"])
def test_loopback_embedded_in_routed_ipv6_is_not_loopback(
    dev_client: FlaskClient, wrapped: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NAT64 and 6to4 addresses carry an IPv4 address but are routed off this machine (to a gateway or
    # relay): the development mode's "loopback only" must not send the token there, named or resolved
    connected: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda s, a: connected.append(a))
    body = hook_call(f"http://[{wrapped}]:8080/fhir", "conditions")
    assert NOT_PERMITTED in diagnostics(dev_client.post("/cds-services/vcf-patient-view", json=body))
    answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (wrapped, 8080, 0, 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answer)
    body = hook_call("http://localhost:8080/fhir", "conditions")
    assert diagnostics(dev_client.post("/cds-services/vcf-patient-view", json=body)).endswith(UNREACHABLE)
    assert connected == []


def test_served_next_link_stays_under_the_callers_fhir_servers(tmp_path: Any, fhir: Fhir) -> None:
    # Two EHRs on one FHIR host, told apart by path: the first's prefetched next link into the second's
    # base is not followed (the loopback server would answer it), its own is
    signer = ec_signer("k1")
    own, other = base(fhir) + "/tenant-a", base(fhir) + "/tenant-b"
    doc = issuer_file(
        {"iss": EHR, "jwks": {"keys": [signer.public_jwk()]}, "fhirServers": [own]},
        {"iss": "https://other-ehr.example.org", "jwks": {"keys": [signer.public_jwk()]}, "fhirServers": [other]},
    )
    (tmp_path / "issuers.json").write_bytes(orjson.dumps(doc))
    env = {"VCF_CDS_TRUSTED_ISSUERS": str(tmp_path / "issuers.json"), "VCF_CDS_PUBLIC_URL": PUBLIC_URL}
    with serving(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", env=env) as served:

        def call(next_link: str) -> tuple[int, bytes]:
            body = hook_call(own)
            body["prefetch"]["conditions"] = bundle()
            body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": next_link}]
            token = signer.sign(claims(datetime.now(UTC), aud=SERVICE_URL))
            url = served.base + "/cds-services/vcf-patient-view"
            return http("POST", url, body, Authorization=f"Bearer {token}")

        for escape in (f"{other}/{QUERY}", f"../tenant-b/{QUERY}"):
            status, raw = call(escape)
            assert status == 412 and b"next link is not on fhirServer; not followed" in raw, escape
        assert call(f"{own}/{QUERY}")[0] == 200
