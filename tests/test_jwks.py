"""JWK Sets over HTTPS: timeout, size cap, no redirects, TTL cache, rate-limited refresh."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import requests
import responses

from service.auth.jwks import FETCH_TIMEOUT, JwkList, JwksCache, JwksError, fetch_jwks
from service.auth.replay import MemoryReplayStore
from service.auth.verifier import verify_token

from test_auth import SPEC, SPEC_TOKEN, spec_registry

URL = "https://ehr.example.org/.well-known/jwks.json"
KEY = {"kty": "EC", "crv": "P-384", "kid": "k1", "x": "x", "y": "y"}


@responses.activate
def test_fetch_returns_the_keys_with_a_timeout() -> None:
    responses.get(URL, json={"keys": [KEY, "junk"]})
    assert fetch_jwks(URL) == [KEY]
    sent = responses.calls[0].request
    assert sent.req_kwargs["timeout"] == FETCH_TIMEOUT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"status": 404, "json": {}}, "HTTP 404"),
        # not followed: following would reach the unregistered URL and fail as a ConnectionError
        ({"status": 302, "headers": {"Location": "https://evil.example.com/jwks"}}, "HTTP 302"),
        ({"body": "<html>"}, "not JSON"),
        ({"json": {"kty": "EC"}}, "not a JWK Set"),
        ({"json": {"keys": [KEY] * 5000}}, "size cap"),
        ({"body": requests.ConnectTimeout()}, "ConnectTimeout"),
    ],
)
@responses.activate
def test_fetch_failures(reply: dict[str, object], message: str) -> None:
    responses.get(URL, **reply)  # type: ignore[arg-type]
    with pytest.raises(JwksError, match=message):
        fetch_jwks(URL)


@responses.activate
def test_declared_length_over_the_cap_is_not_read() -> None:
    responses.get(URL, body=b"{}", headers={"Content-Length": str(10**9)}, auto_calculate_content_length=False)
    with pytest.raises(JwksError, match="size cap"):
        fetch_jwks(URL, max_bytes=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self, *results: JwkList | JwksError):
        self.results = list(results)
        self.calls = 0

    def __call__(self, url: str) -> JwkList:
        self.calls += 1
        result = self.results[min(self.calls, len(self.results)) - 1]
        if isinstance(result, JwksError):
            raise result
        return result


def test_cache_reuses_a_set_until_its_ttl() -> None:
    clock, fetch = Clock(), Fetcher([KEY], [KEY, KEY])
    cache = JwksCache(fetch, ttl=100, min_refresh=10, clock=clock)
    assert cache.keys(URL) == [KEY]
    clock.now = 99
    assert cache.keys(URL) == [KEY] and fetch.calls == 1
    clock.now = 100
    assert len(cache.keys(URL)) == 2 and fetch.calls == 2


def test_forced_refresh_is_rate_limited() -> None:
    clock, fetch = Clock(), Fetcher([KEY])
    cache = JwksCache(fetch, ttl=1000, min_refresh=60, clock=clock)
    cache.keys(URL)
    for t in (1, 30, 59):  # a burst of unknown kids: no refetch within the interval
        clock.now = t
        cache.keys(URL, refresh=True)
    assert fetch.calls == 1
    clock.now = 60
    cache.keys(URL, refresh=True)
    assert fetch.calls == 2


def test_failed_refresh_keeps_the_last_good_set(caplog: pytest.LogCaptureFixture) -> None:
    clock, fetch = Clock(), Fetcher([KEY], JwksError("HTTP 503"))
    cache = JwksCache(fetch, ttl=10, min_refresh=5, clock=clock)
    cache.keys(URL)
    clock.now = 20
    with caplog.at_level(logging.WARNING, logger="vcf_cds"):
        assert cache.keys(URL) == [KEY]
    assert "HTTP 503" in caplog.text and "ehr.example.org" in caplog.text


def test_failure_without_a_set_is_an_error_and_not_retried_at_once() -> None:
    clock, fetch = Clock(), Fetcher(JwksError("HTTP 503"), [KEY])
    cache = JwksCache(fetch, ttl=10, min_refresh=5, clock=clock)
    with pytest.raises(JwksError, match="503"):
        cache.keys(URL)
    clock.now = 1
    with pytest.raises(JwksError, match="not retried"):
        cache.keys(URL, refresh=True)
    assert fetch.calls == 1
    clock.now = 5
    assert cache.keys(URL) == [KEY]


@responses.activate
def test_spec_token_verifies_against_its_jku_over_http() -> None:
    jku = "https://fhir-ehr.example.com/jwk_uri"
    responses.get(jku, json=json.loads((SPEC / "26-jwks-public.json").read_text()))
    payload = json.loads((SPEC / "25-jwt-payload.json").read_text())
    verified = verify_token(
        SPEC_TOKEN,
        audience=payload["aud"],
        now=datetime.fromtimestamp(payload["exp"] - 60, UTC),
        issuers=spec_registry(jwks=None),
        replay=MemoryReplayStore(),
        keys=JwksCache(),
    )
    assert verified.kid == "example-kid" and len(responses.calls) == 1
