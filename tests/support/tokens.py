"""Test keys and CDS Hooks JWTs with real signatures. Keys are generated at test time, never stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import jwt.warnings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

EHR = "https://ehr.example.org"
PUBLIC_URL = "https://cds.example.org"
SERVICE_URL = f"{PUBLIC_URL}/cds-services/vcf-patient-view"


@dataclass
class Signer:
    kid: str
    alg: str
    private_key: Any

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(self.public_key))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, "typ": "JWT", **header}
        with warnings.catch_warnings():  # the deliberately short test key must still sign
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(claims, self.private_key, algorithm=headers.pop("alg", self.alg), headers=headers)


def ec_signer(kid: str, alg: str = "ES384") -> Signer:
    curve = {"ES384": ec.SECP384R1(), "ES256": ec.SECP256R1()}[alg]
    return Signer(kid, alg, ec.generate_private_key(curve))


def rsa_signer(kid: str, alg: str = "RS384", bits: int = 3072) -> Signer:
    return Signer(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=bits))


def claims(now: datetime, aud: str | list[str] = SERVICE_URL, iss: str = EHR, **extra: Any) -> dict[str, Any]:
    t = int(now.timestamp())
    base: dict[str, Any] = {"iss": iss, "aud": aud, "iat": t, "exp": t + 300, "jti": str(uuid.uuid4())}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(signature)}"


def hs256_with_public_key(signer: Signer, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key (which anyone has)."""
    head = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64(head)}.{b64(payload)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(signer.public_pem(), signing_input, hashlib.sha256).digest())}"


def issuer_file(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"issuers": list(entries)}
