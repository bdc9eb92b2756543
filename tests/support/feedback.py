"""Card feedback tests' pieces: cards to give feedback on, and one feedback item."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from support.builders import ICD10CM, condition, pain, request

FEEDBACK = "/cds-services/vcf-patient-view/feedback"


def issue_cards(client: FlaskClient) -> list[dict[str, Any]]:
    """The cards of a patient-view call with an osteoporotic fracture and pain 8: fresh uuids each call."""
    response = client.post(
        "/cds-services/vcf-patient-view", json=request(condition("c1", ICD10CM, "M80.08XA"), pain("o1", 8))
    )
    assert response.status_code == 200
    return response.get_json()["cards"]  # type: ignore[no-any-return]


def item(card: str, outcome: str = "accepted", when: str = "2026-06-15T14:05:31Z", **extra: Any) -> dict[str, Any]:
    return {"card": card, "outcome": outcome, "outcomeTimestamp": when, **extra}
