"""Order hooks: augmentation orders recognised, checked with the patient-view decision, replaced by suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from service import create_app
from service.pipeline import Engine

from support.builders import ICD10CM, PATIENT_ID, condition, finding, pain, request, vcf_extension
from support.cds_rules import response_problems

CPT = "http://www.ama-assn.org/go/cpt"


def draft(code: str, system: str = CPT, rid: str = "sr1", rtype: str = "ServiceRequest") -> dict[str, Any]:
    r: dict[str, Any] = {
        "resourceType": rtype,
        "id": rid,
        "status": "draft" if rtype == "ServiceRequest" else "preparation",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if rtype == "ServiceRequest":
        r["intent"] = "order"
    return r


def order_call(
    client: FlaskClient,
    *orders: dict[str, Any],
    hook: str = "order-sign",
    record: tuple[dict[str, Any], ...] = (),
    selections: list[str] | None = None,
) -> Any:
    body = request(*record, hook=hook)
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": o} for o in orders],
    }
    if hook == "order-select":
        body["context"]["selections"] = (
            selections if selections is not None else [f"{o['resourceType']}/{o['id']}" for o in orders]
        )
    return client.post(f"/cds-services/vcf-{hook}", json=body)


AUGMENTATION_RECORD = (
    condition("c1", ICD10CM, "M80.08XA", onset="2026-04-01"),
    pain("o1", 7),
    finding("o2", "point-tenderness", valueBoolean=True),
)
EARLY_RECORD = (condition("c1", ICD10CM, "M80.08XA", onset="2026-06-10"), pain("o1", 6))


@pytest.mark.parametrize(
    ("code", "system"),
    [
        ("22510", CPT),
        ("22511", CPT),
        ("22512", CPT),
        ("22513", CPT),
        ("22514", CPT),
        ("22515", CPT),
        ("0PU43JZ", "http://www.cms.gov/Medicare/Coding/ICD10"),
        ("0QU03JZ", "http://www.cms.gov/Medicare/Coding/ICD10"),
    ],
)
def test_every_augmentation_code_is_checked(client: FlaskClient, code: str, system: str) -> None:
    cards = order_call(client, draft(code, system), record=AUGMENTATION_RECORD).get_json()["cards"]
    assert [vcf_extension(c)["kind"] for c in cards] == ["order-check"]
    assert vcf_extension(cards[0])["orderAppropriate"] is True


@pytest.mark.parametrize("code", ["72148", "22558", "0PU33JZ"])  # MRI, fusion, cervical PCS
def test_other_orders_get_no_card_and_need_no_data(client: FlaskClient, code: str) -> None:
    body = {
        "hook": "order-sign",
        "hookInstance": "x",
        "context": {
            "patientId": PATIENT_ID,
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft(code)}]},
        },
    }
    response = client.post("/cds-services/vcf-order-sign", json=body)  # no prefetch at all: still 200
    assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_inappropriate_order_is_replaced_by_the_alternative(client: FlaskClient) -> None:
    body = order_call(client, draft("22513"), hook="order-select", record=EARLY_RECORD).get_json()
    assert response_problems(body) == []
    [card] = body["cards"]
    ext = vcf_extension(card)
    assert card["indicator"] == "warning" and ext["orderAppropriate"] is False
    assert ext["recommendation"] == "conservative" and ext["orders"] == ["ServiceRequest/sr1"]
    [suggestion] = card["suggestions"]
    types = [a["type"] for a in suggestion["actions"]]
    assert types == ["delete", "create"]
    assert suggestion["actions"][0]["resourceId"] == "ServiceRequest/sr1"
    assert suggestion["actions"][1]["resource"]["resourceType"] == "ServiceRequest"
    codes = {r["code"] for r in card["overrideReasons"]}
    assert {"cds-not-applicable", "recipient-disagrees-evidence"} <= codes
    assert "3 weeks of conservative care" in card["detail"]  # the unmet criterion is named


def test_order_select_only_checks_the_selected_orders(client: FlaskClient) -> None:
    response = order_call(
        client,
        draft("22513"),
        draft("72148", rid="mri"),
        hook="order-select",
        record=AUGMENTATION_RECORD,
        selections=["ServiceRequest/mri"],
    )
    assert response.get_json() == {"cards": []}


def test_no_vcf_is_a_warning(client: FlaskClient) -> None:
    [card] = order_call(client, draft("22514"), record=(condition("c1", ICD10CM, "M81.0"),)).get_json()["cards"]
    assert card["indicator"] == "warning"
    assert "no documented vertebral compression fracture" in card["summary"]
    assert vcf_extension(card)["orderAppropriate"] is False


def test_order_hooks_use_the_patient_view_decision(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.pipeline

    calls = []
    real = service.pipeline.decide
    monkeypatch.setattr(service.pipeline, "decide", lambda facts: calls.append(facts) or real(facts))
    order_call(client, draft("22513"), record=AUGMENTATION_RECORD)
    client.post("/cds-services/vcf-patient-view", json=request(*AUGMENTATION_RECORD))
    assert len(calls) == 2  # one decide function serves both hooks


@pytest.mark.parametrize("draft_orders", [None, [], {"resourceType": "Patient", "id": "x"}])
def test_draft_orders_must_be_a_bundle(client: FlaskClient, draft_orders: Any) -> None:
    body = request(*AUGMENTATION_RECORD, hook="order-sign")
    body["context"]["draftOrders"] = draft_orders
    assert client.post("/cds-services/vcf-order-sign", json=body).status_code == 400


def test_invalid_augmentation_order_is_400(client: FlaskClient) -> None:
    bad = draft("22513")
    bad["status"] = 7
    assert order_call(client, bad, record=AUGMENTATION_RECORD).status_code == 400


def test_an_invalid_order_is_named_without_echoing_what_it_holds(client: FlaskClient) -> None:
    bad = draft("22513", rid="SECRET name<b>")
    bad["note"] = [{"text": "SECRET"}, None]
    response = order_call(client, bad, record=AUGMENTATION_RECORD)
    assert response.status_code == 400
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert diagnostics.startswith("ServiceRequest/? is not valid FHIR R4 ServiceRequest: ")
    assert "SECRET" not in diagnostics


def test_a_site_code_for_augmentation_is_recognised(tmp_path: Path) -> None:
    site = {
        "resourceType": "ValueSet",
        "id": "site-aug",
        "status": "active",
        "url": "http://vcf-cds.org/fhir/ValueSet/vertebral-augmentation-procedure",
        "compose": {"include": [{"system": "urn:hospital:orders", "concept": [{"code": "IR-KYPHO"}]}]},
    }
    (tmp_path / "site.json").write_bytes(orjson.dumps(site))
    app = create_app({"TESTING": True, "ENGINE": Engine.load(tmp_path), "DATABASE_URL": "sqlite://"})
    response = order_call(app.test_client(), draft("IR-KYPHO", "urn:hospital:orders"), record=AUGMENTATION_RECORD)
    assert [vcf_extension(c)["kind"] for c in response.get_json()["cards"]] == ["order-check"]
