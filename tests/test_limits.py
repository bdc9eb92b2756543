"""Request limits: bounded JSON nesting (400), body size (413), JSON only (415) — each an OperationOutcome."""

from __future__ import annotations

import orjson
import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from service.normalize.jsondepth import MAX_JSON_DEPTH, json_depth_exceeds

from support.builders import ICD10CM, condition, request

URL = "/cds-services/vcf-patient-view"


def with_nested(levels: int, where: str) -> bytes:
    """A valid request whose ``where`` holds ``levels`` nested FHIR extensions (built as text: too deep
    for a serializer)."""
    body = request(condition("c1", ICD10CM, "M80.08XA"))
    if where == "context":
        body["context"]["x"] = "@@"
    else:
        body["prefetch"]["conditions"]["entry"][0]["resource"]["extension"] = "@@"
    nested = b'[{"url":"http://example.org/x","extension":' * levels + b"[]" + b"}]" * levels
    return orjson.dumps(body).replace(b'"@@"', nested)


def outcome(response: object) -> dict[str, object]:
    assert response.mimetype == "application/fhir+json"  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("levels", [40, 250, 600])
def test_deep_nesting_in_a_resource_the_decision_reads_is_a_400_outcome(client: FlaskClient, levels: int) -> None:
    # 250 nested extensions used to overflow FHIR model validation (a 500); 600 trips orjson's own limit
    response = client.post(URL, data=with_nested(levels, "resource"), content_type="application/json")
    assert response.status_code == 400
    assert "deeper than" in str(outcome(response)["diagnostics"])


@pytest.mark.parametrize("levels", [40, 250])
def test_deep_nesting_in_what_nothing_reads_is_answered(client: FlaskClient, levels: int) -> None:
    # an unknown context field is read by nothing that recurses; the call is answered as without it
    response = client.post(URL, data=with_nested(levels, "context"), content_type="application/json")
    assert response.status_code == 200
    assert [card["summary"] for card in response.get_json()["cards"]] == [
        card["summary"]
        for card in client.post(URL, data=with_nested(0, "context"), content_type="application/json").get_json()[
            "cards"
        ]
    ]


def test_nesting_past_the_parsers_bound_is_a_400_outcome(client: FlaskClient) -> None:
    response = client.post(URL, data=with_nested(600, "context"), content_type="application/json")
    assert response.status_code == 400
    assert "deeper than 1024 levels" in str(outcome(response)["diagnostics"])


def test_realistic_nesting_is_fine(client: FlaskClient) -> None:
    response = client.post(URL, data=with_nested(10, "resource"), content_type="application/json")
    assert response.status_code == 200


def depth(value: object) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(depth, value), default=0) if isinstance(value, list) else 0


# strings full of what the text-level count must see through: brackets, quotes, backslashes
TRICKY = st.text(alphabet='{}[]"\\:,aé', max_size=6) | st.sampled_from(["\\", '\\"', '"', "\\u0022"])
JSON = st.recursive(
    TRICKY | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=30,
)


@given(JSON, st.integers(min_value=0, max_value=3))
def test_depth_of_the_text_is_the_depth_of_the_value(value: object, margin: int) -> None:
    raw, levels = orjson.dumps(value), depth(value)
    assert json_depth_exceeds(raw, max(levels - margin, 0)) == (levels > max(levels - margin, 0))
    assert not json_depth_exceeds(raw, levels + margin)
    assert json_depth_exceeds(b"  " + raw.replace(b",", b" , ") + b"\n", levels - 1) == (levels > 0)  # whitespace


def test_depth_is_measured_without_recursion() -> None:
    assert not json_depth_exceeds(b'{"a": [1, {"b": "c"}]}', 3)
    assert json_depth_exceeds(b'{"a": [1, {"b": []}]}', 3)
    assert not json_depth_exceeds(b'"scalar"', 0)
    assert json_depth_exceeds(b"[" * 100_000 + b"]" * 100_000, MAX_JSON_DEPTH)  # far past the recursion limit


def test_body_over_the_limit_is_413(client: FlaskClient) -> None:
    response = client.post(URL, data=b"[" + b" " * (11 * 1024 * 1024) + b"]", content_type="application/json")
    assert response.status_code == 413 and outcome(response)["code"] == "too-costly"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_not_json_is_415(client: FlaskClient, content_type: str) -> None:
    response = client.post(URL, data=b"{}", content_type=content_type)
    assert response.status_code == 415 and outcome(response)["code"] == "not-supported"


@pytest.mark.parametrize("url", ["/cds-services/vcf-patient-view/feedback", "/viewer/prepare", "/viewer/check"])
def test_other_endpoints_bound_the_whole_body(client: FlaskClient, url: str) -> None:
    # these recurse into what they are sent (date shifting, schemas), so the whole body is bounded
    body = b'{"feedback": ' + b"[" * 70 + b"]" * 70 + b"}"
    response = client.post(url, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "deeper than 64 levels" in str(outcome(response)["diagnostics"])
