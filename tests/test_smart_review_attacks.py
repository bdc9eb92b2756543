"""Security review of the SMART app (issue 20): attacks against SMART App Launch 2.x and the OAuth 2.0
Security BCP, with the real parts of tests/test_smart_app.py (Authlib's authorization server and
sekmet-fhir, tests/support/smart_ehr.py) plus a hostile server that is *also* registered in the app's clients
file: a deployment with several EHRs trusts each one for its own launches only.

Tests marked ``xfail(strict=True)`` are findings (they pass once the code is fixed, then the marker
must go); the others are attacks that held up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, redirect, request
from sqlalchemy import create_engine, func, select

from service.pipeline import Engine
from service.store.db import smart_session

from support.served import free_port
from support.smart_ehr import (
    CLIENT_ID,
    CLINICIAN,
    FakeEhr,
    LaunchContext,
    Served,
    build_ehr_app,
    fhir,
)
from support.smart_world import (
    PATIENT_FIXTURE,
    LogCollector,
    collected_logs,
    record_resources,
    sekmet_running,
    smart_service,
    transaction,
)

pytestmark = pytest.mark.slow

HOSTILE_EHRS = ("mixup", "bigtoken", "slowtoken", "forged", "slowdisc")
BIG_TOKEN_LIMIT = 64 * 1024 * 1024  # what the hostile token endpoint is willing to send at most


def trickle(body: bytes, seconds: float = 8.0) -> Iterator[bytes]:
    """``body`` a byte every 0.3 s for ``seconds``, then the rest: never 1 s without a byte."""
    sent = 0
    while sent < len(body) and sent * 0.3 < seconds:
        time.sleep(0.3)
        yield body[sent : sent + 1]
        sent += 1
    yield body[sent:]


@dataclass
class Hostile:
    """A registered EHR that turned hostile (compromised, or a test system left in the clients file)."""

    base: str = ""
    honest: FakeEhr | None = None
    stolen: list[dict[str, Any]] = field(default_factory=list)  # token responses won with a stolen code
    received_codes: list[str] = field(default_factory=list)
    big_sent: list[int] = field(default_factory=list)
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    id_token_alg: str = "RS256"

    def iss(self, name: str) -> str:
        return f"{self.base}/{name}/fhir"


def hostile_app(h: Hostile) -> Flask:
    app = Flask("hostile")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # nobody published this key

    @app.get("/<name>/fhir/.well-known/smart-configuration")
    def configuration(name: str) -> Any:
        doc = {
            "jwks_uri": f"{h.base}/{name}/jwks",  # the key it signs with: the signature itself verifies
            "authorization_endpoint": f"{h.base}/{name}/authorize",
            "token_endpoint": f"{h.base}/{name}/token",
            "code_challenge_methods_supported": ["S256"],
        }
        if name != "slowdisc":
            return doc
        body = json.dumps(doc).encode()

        def drip() -> Iterator[bytes]:  # one byte at a time, each well within the per-read timeout
            yield from trickle(body)

        return Response(drip(), mimetype="application/json")

    @app.get("/<name>/jwks")
    def jwks(name: str) -> Any:
        return {"keys": [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "use": "sig"}]}

    @app.get("/<name>/authorize")
    def authorize(name: str) -> Any:
        q = request.args
        if name == "mixup":
            # classic mix-up: send the victim on to the honest EHR, same client_id, state and PKCE
            # challenge; its code comes back to the app's one callback, bound (by state) to us
            assert h.honest is not None
            params = {k: q[k] for k in ("response_type", "client_id", "redirect_uri", "state", "scope")}
            params |= {k: q[k] for k in ("code_challenge", "code_challenge_method")}
            params["aud"] = h.honest.iss
            return redirect(f"{h.honest.base}/authorize?{urlencode(params)}", 302)
        return redirect(f"{q['redirect_uri']}?{urlencode({'code': 'hostile-code', 'state': q['state']})}", 302)

    @app.post("/<name>/token")
    def token(name: str) -> Any:
        form = request.form
        h.received_codes.append(form.get("code", ""))
        if name == "mixup":
            assert h.honest is not None
            won = requests.post(
                f"{h.honest.base}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": form["code"],
                    "code_verifier": form["code_verifier"],  # the app handed it over with the code
                    "redirect_uri": form["redirect_uri"],
                    "client_id": CLIENT_ID,  # a public client: its id is all it takes
                },
                timeout=30,
            )
            if won.status_code == 200:
                h.stolen.append(won.json())
            return Response(json.dumps({"error": "invalid_grant"}), status=400, mimetype="application/json")
        if name == "bigtoken":
            sent = [0]
            h.big_sent.append(0)

            def endless() -> Iterator[bytes]:
                yield b'{"access_token": "x", "token_type": "Bearer", "padding": "'
                chunk = b"a" * 65536
                while sent[0] < BIG_TOKEN_LIMIT:
                    sent[0] += len(chunk)
                    h.big_sent[-1] = sent[0]
                    yield chunk

            return Response(endless(), mimetype="application/json")
        if name == "slowtoken":
            body = json.dumps({"access_token": "slow", "token_type": "Bearer", "patient": "pv45"}).encode()

            return Response(trickle(body), mimetype="application/json")
        # forged: a token response whose id_token nobody can verify, for a user of the attacker's choice
        claims = {
            "iss": "https://someone-else.example/fhir",
            "sub": "x",
            "aud": CLIENT_ID,
            "exp": int(time.time()) + 300,
            "fhirUser": "Practitioner/chief-of-spine-surgery",
            **h.id_token_claims,
        }
        signing = key if h.id_token_alg == "RS256" else None
        id_token = jwt.encode(claims, signing, algorithm=h.id_token_alg)  # type: ignore[arg-type]
        return {
            "access_token": "forged-access-token",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "launch openid fhirUser patient/Observation.rs patient/Observation.c",
            "patient": "pv45",
            "id_token": id_token,
        }

    return app


@dataclass
class Review:
    ehr: FakeEhr
    hostile: Hostile
    app_url: str
    database: Any
    logs: LogCollector

    def rows(self, table: Any) -> int:
        with self.database.connect() as c:
            return int(c.execute(select(func.count()).select_from(table)).scalar_one())

    def fhir_user(self) -> str | None:
        with self.database.connect() as c:
            row = c.execute(select(smart_session.c.fhir_user).order_by(smart_session.c.expires_at.desc())).first()
        return None if row is None else row[0]


def xss_resources() -> list[dict[str, Any]]:
    """Fixture 45's record copied to patient ``xss1``, its name and fracture's text hostile markup."""
    out = []
    for r in json.loads(json.dumps(record_resources(PATIENT_FIXTURE))):
        text = json.dumps(r).replace("Patient/pv45", "Patient/xss1")
        r = json.loads(text)
        if r["resourceType"] == "Patient":
            r["id"] = "xss1"
            r["name"] = [{"text": '<script>alert("name")</script>'}]
        else:
            r["id"] = f"xss-{r['id']}"[:64]
        if r["resourceType"] == "Condition":
            r["code"]["text"] = '<img src=x onerror=alert("code")></script><script>alert(1)</script>'
        out.append(r)
    return out


@pytest.fixture(scope="module")
def review(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test EHRs are http on loopback
    folder = tmp_path_factory.mktemp("smart-review")
    ehr_port, sekmet_port, app_port, hostile_port = free_port(), free_port(), free_port(), free_port()
    ehr = FakeEhr(f"http://127.0.0.1:{ehr_port}", f"http://127.0.0.1:{sekmet_port}")
    ehr.default_context = LaunchContext("pv45")
    hostile = Hostile(f"http://127.0.0.1:{hostile_port}", ehr)
    served: list[Served] = []
    with sekmet_running(folder, sekmet_port, ehr.iss), collected_logs() as collector:
        try:
            app_url = f"http://127.0.0.1:{app_port}"
            served.append(Served(build_ehr_app(ehr, f"{app_url}/app/callback/honest"), ehr_port))
            served.append(Served(hostile_app(hostile), hostile_port))
            fhir(ehr.iss, "POST", body=transaction(record_resources(PATIENT_FIXTURE) + xss_resources()))
            # several EHRs: each its own redirect URI, /app/callback/{slug}
            entries = [{"iss": ehr.iss, "client_id": CLIENT_ID, "client_secret": None, "slug": "honest"}]
            entries += [
                {"iss": hostile.iss(n), "client_id": CLIENT_ID, "client_secret": None, "slug": n} for n in HOSTILE_EHRS
            ]
            clients = folder / "smart-clients.json"
            clients.write_text(json.dumps({"clients": entries}))
            app, database_url = smart_service(engine, folder, app_url, clients)
            served.append(Served(app, app_port))
            yield Review(ehr, hostile, app_url, create_engine(database_url), collector)
        finally:
            for s in served:
                s.close()


def launch(review: Review, iss: str, browser: requests.Session | None = None, **extra: str) -> requests.Response:
    browser = browser or requests.Session()
    return browser.get(
        f"{review.app_url}/app/launch?{urlencode({'iss': iss, **extra})}", allow_redirects=False, timeout=60
    )


def to_callback(review: Review, iss: str, browser: requests.Session) -> str:
    """Follows the launch through the EHR(s) up to the redirect back to the app: the callback URL."""
    url = launch(review, iss, browser).headers["Location"]
    while not url.startswith(f"{review.app_url}/app/callback"):
        answer = browser.get(url, allow_redirects=False, timeout=60)
        assert answer.status_code in (302, 303), answer.text
        url = answer.headers["Location"]
    return url


def signed_in(review: Review, context: LaunchContext) -> requests.Session:
    browser = requests.Session()
    review.ehr.default_context = context
    answer = browser.get(to_callback(review, review.ehr.iss, browser), allow_redirects=False, timeout=60)
    assert answer.status_code == 303, answer.text
    return browser


# ---------------------------------------------------------------------------------------------- findings


def test_mix_up_a_code_from_one_ehr_never_reaches_another_ehrs_token_endpoint(review: Review) -> None:
    """RFC 9700 (OAuth 2.0 Security BCP) 4.4: a client talking to several authorization servers MUST
    tell which one answered (the ``iss`` parameter of RFC 9207, or a redirect URI per server). The
    app has one callback for all EHRs and trusts ``state`` alone, so a hostile registered EHR that
    forwards the clinician to the honest EHR receives the honest EHR's code *and* the PKCE verifier,
    and redeems them itself: PKCE does not help a public client here."""
    review.ehr.default_context = LaunchContext("pv45")
    browser = requests.Session()
    url = launch(review, review.hostile.iss("mixup"), browser).headers["Location"]  # a link the attacker sent
    # each EHR has its own redirect URI: the hostile one's is not the honest EHR's registration,
    # so the honest EHR refuses to send its code there
    while not url.startswith(f"{review.app_url}/app/callback"):
        answer = browser.get(url, allow_redirects=False, timeout=60)
        if answer.status_code not in (302, 303):
            break
        url = answer.headers["Location"]
    else:
        assert browser.get(url, allow_redirects=False, timeout=60).status_code == 400
    assert answer.status_code == 400 and "refused" in answer.text
    assert review.hostile.received_codes == []
    stolen = [t["access_token"] for t in review.hostile.stolen]
    assert stolen == [], "the hostile EHR redeemed the honest EHR's code: it holds an access token for pv45"


def test_a_trickling_discovery_document_does_not_hold_the_launch(review: Review, monkeypatch: Any) -> None:
    """service/smart/http.py promises 'a timeout on every call'; requests' timeout is per read, so a
    server sending one byte every 0.3 s never trips it. With TIMEOUT at 1 s the launch must answer
    within a few seconds; the hostile server takes 8 s."""
    monkeypatch.setattr("service.smart.http.TIMEOUT", 1.0)
    started = time.monotonic()
    answer = launch(review, review.hostile.iss("slowdisc"))
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the launch took {elapsed:.0f} s (status {answer.status_code})"


def test_the_token_response_is_read_up_to_a_cap(review: Review) -> None:
    """Every other answer the app reads is capped at MAX_BYTES (1 MiB); the token exchange goes
    through Authlib/requests, which reads the whole body into memory: a hostile token endpoint can
    send 64 MiB (or forever, quickly enough never to time out)."""
    from service.smart.http import MAX_BYTES

    browser = requests.Session()
    callback = to_callback(review, review.hostile.iss("bigtoken"), browser)
    answer = browser.get(callback, allow_redirects=False, timeout=120)
    assert answer.status_code == 400
    sent = review.hostile.big_sent[-1]
    # socket buffers on loopback hold a few MiB at most beyond what the app chose to read
    assert sent <= MAX_BYTES + 8 * 1024 * 1024, f"the app read {sent / 2**20:.0f} MiB of token response"


def test_a_trickling_token_endpoint_does_not_hold_the_callback(review: Review, monkeypatch: Any) -> None:
    monkeypatch.setattr("service.smart.oauth.TIMEOUT", 1.0)
    browser = requests.Session()
    callback = to_callback(review, review.hostile.iss("slowtoken"), browser)
    started = time.monotonic()
    browser.get(callback, allow_redirects=False, timeout=120)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the callback took {elapsed:.0f} s"


@pytest.mark.parametrize("alg", ["RS256", "none"])
def test_an_id_token_from_another_issuer_or_unsigned_is_refused(review: Review, alg: str) -> None:
    """OpenID Connect Core 3.1.3.7: TLS to the token endpoint MAY stand in for the signature, but the
    ``iss`` claim MUST equal the issuer, and ``alg: none`` is never acceptable for a code-flow
    id_token. service/smart/tokens.py checks ``aud`` and ``exp`` only, then writes ``fhirUser`` as
    the performer of every finding the clinician records."""
    review.hostile.id_token_alg = alg
    sessions = review.rows(smart_session)
    browser = requests.Session()
    answer = browser.get(to_callback(review, review.hostile.iss("forged"), browser), allow_redirects=False, timeout=60)
    stored = review.fhir_user() if review.rows(smart_session) > sessions else None
    assert answer.status_code == 400, f"session created with performer {stored!r}"
    assert ("another server" if alg == "RS256" else "asymmetric") in answer.text
    assert review.rows(smart_session) == sessions


def test_a_planted_launch_cookie_does_not_bind_the_attackers_state(review: Review) -> None:
    """Login CSRF through cookie fixation: ``browser = request.cookies.get(LAUNCH_COOKIE) or
    new_secret()`` lets whoever can plant that cookie (a sibling subdomain, an http page of the
    same host: the cookie has no ``__Host-`` prefix) bind their own launch's ``state`` to the
    victim's browser. The attacker signs in at the EHR, then sends the victim the callback URL: the
    victim's browser ends up in the attacker's session (and records findings into it)."""
    planted = "known-to-the-attacker"
    attacker, victim = requests.Session(), requests.Session()
    for b in (attacker, victim):
        b.cookies.set("vcf_cds_smart_launch", planted, domain="127.0.0.1", path="/app/")
    review.ehr.default_context = LaunchContext("pv45")
    callback = to_callback(review, review.ehr.iss, attacker)
    answer = victim.get(callback, allow_redirects=False, timeout=60)
    assert answer.status_code == 400, "the victim's browser accepted the attacker's sign-in"


def test_the_page_identifies_the_patient_beyond_the_name(review: Review) -> None:
    """The test EHR answers ``need_patient_banner: true`` (SMART App Launch: the app shows the
    patient banner). The page shows the name only; a clinician recording a finding cannot tell two
    Irene Castellanos apart. Expected at least birth date and sex (the record has both)."""
    browser = signed_in(review, LaunchContext("pv45"))
    page = browser.get(f"{review.app_url}/app/", timeout=60).text
    assert "1954-02-22" in page or "22 Feb 1954" in page
    assert re.search(r"\b(female|Female|F)\b", page)
    banner = re.search(r'<section id="patient-banner".*?</section>', page, re.S)
    assert banner and all(v in banner.group(0) for v in ("Irene Castellano", "1954-02-22", "female", "E4350774"))
    # above each finding form: whom the finding is being recorded for
    forms = page.count('<form method="post" action="/app/findings"')
    assert forms >= 2  # fixture 45 documents neither tenderness nor edema
    assert page.count("Recording for Irene Castellano, born 1954-02-22, female, ID E4350774") == forms


def test_multiple_launches_share_one_cookie_so_a_reload_switches_patient(review: Review) -> None:
    """Not a pass/fail finding but a behaviour to know: one session per browser, not per launch. A
    tab opened for pv45 shows xss1 after a reload once xss1 was launched in another tab. Its old
    form is refused (CSRF token of the old session), so no finding lands on the wrong patient."""
    browser = signed_in(review, LaunchContext("pv45"))
    first = browser.get(f"{review.app_url}/app/", timeout=60).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', first)
    assert csrf and "Castellano" in first
    review.ehr.default_context = LaunchContext("xss1")
    second = to_callback(review, review.ehr.iss, browser)  # another tab, the same browser
    assert browser.get(second, allow_redirects=False, timeout=60).status_code == 303
    reloaded = browser.get(f"{review.app_url}/app/", timeout=60).text
    assert "Castellano" not in reloaded  # the first tab now shows the other patient
    stale = browser.post(
        f"{review.app_url}/app/findings",
        data={"csrf": csrf.group(1), "finding": "point-tenderness", "value": "present"},
        allow_redirects=False,
        timeout=60,
    )
    assert stale.status_code == 403


# ---------------------------------------------------------------------------------------------- held up


def test_markup_in_fhir_data_is_escaped_in_the_page_and_the_figure(review: Review) -> None:
    browser = signed_in(review, LaunchContext("xss1"))
    page = browser.get(f"{review.app_url}/app/", timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in page.text  # shown, as text
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    figure = re.search(r'<script type="application/json" id="timeline-figure">(.*?)</script>', page.text, re.S)
    assert figure and "<" not in figure.group(1)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_concurrent_callbacks_with_one_state_make_one_session(review: Review) -> None:
    review.ehr.default_context = LaunchContext("pv45")
    browser = requests.Session()
    callback = to_callback(review, review.ehr.iss, browser)
    sessions = review.rows(smart_session)
    statuses: list[int] = []
    cookies = browser.cookies.get_dict()

    def hit() -> None:
        statuses.append(requests.get(callback, cookies=cookies, allow_redirects=False, timeout=60).status_code)

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [303] + [400] * 5
    assert review.rows(smart_session) == sessions + 1


def test_injected_form_fields_do_not_reach_the_observation(review: Review) -> None:
    browser = signed_in(review, LaunchContext("pv45"))
    page = browser.get(f"{review.app_url}/app/", timeout=60).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    before = {e["resource"]["id"] for e in fhir(review.ehr.iss, "GET", "Observation?patient=pv45").get("entry", [])}
    for bad in ("nan", "inf", "-1", "101", "1e3", ""):
        refused = browser.post(
            f"{review.app_url}/app/findings",
            data={"csrf": csrf.group(1), "finding": "height-loss", "percent": bad},
            allow_redirects=False,
            timeout=60,
        )
        assert refused.status_code == 400, bad
    answer = browser.post(
        f"{review.app_url}/app/findings",
        data={
            "csrf": csrf.group(1),
            "finding": "height-loss",
            "percent": "30",
            "value": "present",
            "subject": "Patient/pv20",
            "patient": "pv20",
            "performer": "Practitioner/chief",
            "bodySite": "L1",
            "level": "T12",
            "code": "neurologic-deficit",
        },
        allow_redirects=False,
        timeout=60,
    )
    assert answer.status_code == 303, answer.text
    created = [
        e["resource"]
        for e in fhir(review.ehr.iss, "GET", "Observation?patient=pv45").get("entry", [])
        if e["resource"]["id"] not in before
    ]
    assert len(created) == 1
    o = created[0]
    assert o["subject"] == {"reference": "Patient/pv45"} and o["performer"] == [{"reference": CLINICIAN}]
    assert o["code"]["coding"][0]["code"] == "height-loss" and o["valueQuantity"]["value"] == 30
    assert "bodySite" not in o  # fixture 45's fracture has no level: none is invented


def test_no_token_or_code_in_debug_logs(review: Review) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    review.logs.lines.clear()
    try:
        browser = requests.Session()
        review.ehr.default_context = LaunchContext("pv45")
        callback = to_callback(review, review.ehr.iss, browser)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        assert browser.get(callback, allow_redirects=False, timeout=60).status_code == 303
        assert browser.get(f"{review.app_url}/app/", timeout=60).status_code == 200
    finally:
        root.setLevel(level)
    # what the app's process logs: its own loggers and the HTTP/OAuth client libraries it uses. Not
    # werkzeug's development server (the harness; gunicorn's access log has the path only, see
    # service/server.py), the test EHR's Authlib *server*, nor the ``responses`` mock of conftest
    mine = re.compile(r"'name': '(vcf_cds|urllib3|requests|authlib\.integrations|authlib\.oauth2\.client)")
    lines = [line for line in review.logs.lines if mine.search(line)]
    token = review.ehr.issued[-1]
    assert lines
    assert not [line for line in lines if code in line]
    assert not [line for line in lines if token in line or token.split(".")[-1] in line]


def test_a_session_cookie_set_before_sign_in_is_replaced(review: Review) -> None:
    browser = requests.Session()
    browser.cookies.set("vcf_cds_smart", "fixated", domain="127.0.0.1", path="/app/")
    review.ehr.default_context = LaunchContext("pv45")
    answer = browser.get(to_callback(review, review.ehr.iss, browser), allow_redirects=False, timeout=60)
    assert answer.status_code == 303
    value = re.search(r"vcf_cds_smart=([^;]+)", answer.headers["Set-Cookie"])
    assert value and value.group(1) != "fixated"
    with review.database.connect() as c:
        hashes = {r[0] for r in c.execute(select(smart_session.c.id_hash))}
    assert hashlib.sha256(b"fixated").hexdigest() not in hashes


def test_sign_out_needs_the_csrf_token_and_ends_the_session(review: Review) -> None:
    browser = signed_in(review, LaunchContext("pv45"))
    page = browser.get(f"{review.app_url}/app/", timeout=60).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf and 'id="logout"' in page
    sessions = review.rows(smart_session)
    forged = browser.post(f"{review.app_url}/app/logout", data={"csrf": "x"}, allow_redirects=False, timeout=60)
    assert forged.status_code == 403 and review.rows(smart_session) == sessions
    out = browser.post(f"{review.app_url}/app/logout", data={"csrf": csrf.group(1)}, allow_redirects=False, timeout=60)
    assert out.status_code == 200 and "Signed out" in out.text
    assert review.rows(smart_session) == sessions - 1
    assert browser.get(f"{review.app_url}/app/", timeout=60).status_code == 401
