"""A test EHR for the SMART app: a real OAuth 2 authorization server (Authlib's Flask server with
PKCE), in front of a real FHIR server process (sekmet-fhir), both on loopback.

- ``/fhir/.well-known/smart-configuration``: SMART discovery for ``iss = {ehr}/fhir``.
- ``/authorize``: the signed-in clinician (Practitioner/smart-clinician) approves at once; an EHR
  launch's ``launch`` value names its context (patient, appContext, how the token behaves), a
  standalone launch gets ``DEFAULT_CONTEXT``.
- ``/token``: Authlib's authorization-code grant with ``CodeChallenge(required=True)``. The access
  token is one sekmet-fhir itself issued (client_credentials, HS256 JWT with the granted SMART v2
  scopes, which sekmet enforces), so the FHIR server accepts it and refuses what its scopes do not
  cover. The response carries ``patient``, ``appContext`` and an RS256 ``id_token`` with ``fhirUser``,
  signed by the key ``/jwks`` publishes (the discovery's ``jwks_uri``).
- ``/fhir/…``: everything else is passed to sekmet-fhir, whose ``base_url`` is this address (its
  ``next`` links point here).
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request
from werkzeug.serving import make_server

from .sekmet import fhir_call, launch, sekmet_executable

CLIENT_ID = "vcf-cds-app"
CLINICIAN = "Practitioner/smart-clinician"
LOADER_TOKEN = "smart-test-loader-token"  # sekmet's static bearer token, to load the records
SEKMET_CLIENT, SEKMET_SECRET = "test-ehr", "test-ehr-secret-0123456789"
KID = "test-ehr-1"


@dataclass
class LaunchContext:
    patient: str
    app_context: str | None = None
    grant_write: bool = True  # the scope the EHR says it granted includes patient/Observation.c
    fhir_write: bool = True  # the token sekmet-fhir gets to see allows creating Observations
    expires_in: int = 3600


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    context: LaunchContext

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Client:
    client_id: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"  # a public client: PKCE is what protects its code

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class FakeEhr:
    base: str  # http://127.0.0.1:port
    sekmet_root: str
    launches: dict[str, LaunchContext] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # every access token handed out
    default_context: LaunchContext | None = None

    @property
    def iss(self) -> str:
        return f"{self.base}/fhir"

    def launch(self, context: LaunchContext) -> str:
        token = secrets.token_urlsafe(16)
        self.launches[token] = context
        return token


def _sekmet_token(ehr: FakeEhr, scopes: list[str]) -> str:
    data = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": " ".join(scopes)}).encode()
    req = urllib.request.Request(f"{ehr.sekmet_root}/auth/token", data=data, method="POST")
    basic = base64.b64encode(f"{SEKMET_CLIENT}:{SEKMET_SECRET}".encode()).decode()
    req.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(req, timeout=30) as response:
        return str(json.loads(response.read())["access_token"])


def build_ehr_app(ehr: FakeEhr, redirect_uri: str) -> Flask:
    app = Flask("test-ehr")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    codes: dict[str, Code] = {}
    client = Client(CLIENT_ID, redirect_uri)

    def save_token(token: dict[str, Any], req: Any) -> None:
        # the token response is this dict: SMART's launch context goes in beside the access token
        context: LaunchContext = req.authorization_code.context
        granted = req.authorization_code.scope.split()
        fhir_scopes = [s for s in granted if s.startswith("patient/") and (context.fhir_write or not s.endswith(".c"))]
        access = _sekmet_token(ehr, fhir_scopes)
        ehr.issued.append(access)
        shown = [s for s in granted if context.grant_write or s != "patient/Observation.c"]
        now = int(time.time())
        id_token = jwt.encode(
            {
                "iss": ehr.iss,
                "sub": "smart-clinician",
                "aud": CLIENT_ID,
                "iat": now,
                "exp": now + 300,
                "fhirUser": f"{ehr.iss}/{CLINICIAN}",
            },
            key,
            algorithm="RS256",
            headers={"kid": KID},
        )
        token.update(
            access_token=access,
            scope=" ".join(shown),
            patient=context.patient,
            id_token=id_token,
            expires_in=context.expires_in,
            need_patient_banner=True,
        )
        token.pop("refresh_token", None)
        if context.app_context:
            token["appContext"] = context.app_context

    server = AuthorizationServer(
        app, query_client=lambda cid: client if cid == CLIENT_ID else None, save_token=save_token
    )

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            launch = data.get("launch")
            context = ehr.launches.get(launch) if launch else ehr.default_context
            if context is None:
                raise grants.InvalidRequestError("unknown launch")  # type: ignore[attr-defined]
            codes[code] = Code(
                code,
                req.client.client_id,
                data["redirect_uri"],
                data.get("scope", ""),
                data.get("code_challenge"),
                data.get("code_challenge_method"),
                context,
            )

        def query_authorization_code(self, code: str, client: Any) -> Code | None:
            return codes.get(code)

        def delete_authorization_code(self, authorization_code: Code) -> None:
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> str:
            return CLINICIAN

    server.register_grant(CodeGrant, [CodeChallenge(required=True)])

    @app.get("/jwks")
    def jwks() -> Any:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> Any:
        return {
            "jwks_uri": f"{ehr.base}/jwks",
            "authorization_endpoint": f"{ehr.base}/authorize",
            "token_endpoint": f"{ehr.base}/token",
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "openid",
                "fhirUser",
                "launch",
                "launch/patient",
                "patient/*.rs",
                "patient/Observation.c",
            ],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "context-ehr-patient",
                "context-standalone-patient",
                "permission-v2",
                "sso-openid-connect",
            ],
        }

    @app.get("/authorize")
    def authorize() -> Any:
        if request.args.get("aud") != ehr.iss:  # SMART: the token is for this FHIR server only
            return Response("aud must be the FHIR base URL", status=400)
        try:
            grant = server.get_consent_grant(end_user=CLINICIAN)
        except OAuth2Error as e:
            return Response(f"authorization request refused: {e.error}", status=400)
        return server.create_authorization_response(grant_user=CLINICIAN, grant=grant)

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    @app.route("/fhir", methods=["POST"], defaults={"rest": ""})
    @app.route("/fhir/<path:rest>", methods=["GET", "POST"])
    def fhir(rest: str) -> Response:
        url = f"{ehr.sekmet_root}/fhir/{rest}".rstrip("/")
        if request.query_string:
            url += "?" + request.query_string.decode()
        req = urllib.request.Request(url, data=request.get_data() or None, method=request.method)
        for name in ("Authorization", "Content-Type", "Accept"):
            if request.headers.get(name):
                req.add_header(name, request.headers[name])
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return Response(answer.read(), status=answer.status, content_type=answer.headers.get("Content-Type"))
        except urllib.error.HTTPError as e:
            return Response(e.read(), status=e.code, content_type=e.headers.get("Content-Type"))

    return app


def start_sekmet(folder: Path, port: int, public_base: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    executable = sekmet_executable()
    if executable is None:
        raise RuntimeError("sekmet-fhir is not installed (bash scripts/setup installs it with the test extra)")
    settings = {
        "base_url": public_base,  # next links and the tokens' audience: the EHR's FHIR address
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(folder / "data"),
        "server_auth": {
            "types": ["bearer", "smart"],
            "tokens": [LOADER_TOKEN],
            "smart_clients": [
                {"client_id": SEKMET_CLIENT, "client_secret": SEKMET_SECRET, "scopes": "patient/*.cruds"}
            ],
            "enforce_scopes": True,
        },
        "simulator": {"enabled": False},
        "log_inbound": False,
        "own_private_key_path": str(folder / "keys" / "sekmet.pem"),
    }
    process, log = launch(executable, folder, port, settings)
    return process, f"http://127.0.0.1:{port}", log


def fhir(base: str, method: str, path: str = "", body: Any = None, token: str = LOADER_TOKEN) -> Any:
    return fhir_call(base, method, path, body, token)


class Served:
    """A WSGI app on a loopback port, in a thread."""

    def __init__(self, app: Any, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def running(served: list[Served]) -> Iterator[None]:
    try:
        yield
    finally:
        for s in served:
            s.close()
