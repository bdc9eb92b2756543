"""Value sets as data: every file valid FHIR, cited, and matched the way EHRs code."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.valueset import ValueSet

from service.normalize.terminology import Terminology, load_terminology, shipped_mappings_dir

MAPPINGS = sorted(shipped_mappings_dir().glob("*.json"))
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="module")
def t() -> Terminology:
    return load_terminology()


@pytest.mark.parametrize("path", [p for p in MAPPINGS if p.name != "systems.json"], ids=lambda p: p.name)
def test_every_mapping_file_is_valid_fhir_and_cites_its_source(path: Path) -> None:
    doc = orjson.loads(path.read_bytes())
    model = {"ValueSet": ValueSet, "CodeSystem": CodeSystem}[doc["resourceType"]]
    model.model_validate(doc)
    assert doc["url"].startswith("http://vcf-cds.org/fhir/")
    assert len(doc.get("description", "")) > 20, "each value set says what it is for and where its codes come from"


@pytest.mark.parametrize(
    ("system", "code", "concept", "expected"),
    [
        (ICD, "M80.08XA", "vcf-osteoporotic", True),  # hierarchy: M80.08 covers M80.08XA
        (ICD, "m8008xa", "vcf-osteoporotic", True),  # no dot, lower case
        ("http://hl7.org/fhir/sid/icd-10", "M80.08XA", "vcf-osteoporotic", True),  # the other ICD-10 URI
        ("urn:oid:2.16.840.1.113883.6.90", "S32.010A", "vcf-traumatic", True),  # Epic's OID form
        (ICD, "S22.082A", "red-flag", True),  # unstable burst fracture
        (ICD, "S22.081A", "red-flag", False),  # stable burst: not a red flag
        (ICD, "D68.0", "bleeding-disorder", True),
        (ICD, "D68.51", "bleeding-disorder", False),  # thrombophilia, not bleeding
        (ICD, "D68.62", "bleeding-disorder", False),
        (ICD, "D69.6", "bleeding-disorder", True),
        (ICD, "M81.9", "osteoporosis", False),  # not a code
        ("http://snomed.info/sct", "443165006", "vcf-osteoporotic", False),  # no site: not vertebral
        ("http://snomed.info/sct", "15724005", "vcf-unspecified", True),  # Synthea's vertebral fracture
        (ICD, "C90.00", "multiple-myeloma", True),
        (ICD, "C44.91", "cancer", False),  # non-melanoma skin cancer
        ("http://snomed.info/sct", "399068003", "cancer", True),  # Synthea's and OMOP's prostate cancer
        ("http://snomed.info/sct", "91861009", "cancer", True),  # acute myeloid leukemia
        ("http://snomed.info/sct", "372244006", "cancer", True),  # melanoma is counted
        ("http://snomed.info/sct", "254701007", "cancer", False),  # basal cell carcinoma of skin is not
        ("http://snomed.info/sct", "92691004", "cancer", False),  # carcinoma in situ of prostate
        ("http://snomed.info/sct", "126906006", "cancer", False),  # neoplasm of prostate: behaviour unsaid
        ("http://snomed.info/sct", "109989006", "cancer", False),  # myeloma: its own value set
        ("http://snomed.info/sct", "94222008", "cancer", False),  # bone metastasis: its own value set
        (ICD, "O90.89", "pregnancy", False),  # puerperium
        (ICD, "Z33.1", "pregnancy", True),
        ("http://loinc.org", "72514-3", "pain-nrs", True),
        ("http://www.ama-assn.org/go/cpt", "22513", "vertebral-augmentation-procedure", True),
    ],
)
def test_codes_map_to_concepts(t: Terminology, system: str, code: str, concept: str, expected: bool) -> None:
    assert (concept in t.concepts_of_coding(system, code)) is expected


@pytest.mark.parametrize(
    "system",
    [
        "http://snomed.info/sct/731000124108",  # US edition module, sent as Coding.system
        "http://snomed.info/sct/900000000000207008/version/20250301",  # international edition, dated
        " http://snomed.info/sct/731000124108/version/20240901/ ",
        "urn:oid:2.16.840.1.113883.6.96",
    ],
)
def test_a_snomed_edition_uri_as_the_system_is_snomed_ct(t: Terminology, system: str) -> None:
    assert t.canonical_system(system) == "http://snomed.info/sct"
    assert "vcf-unspecified" in t.concepts_of_coding(system, "15724005")


@pytest.mark.parametrize(
    "system",
    [
        "http://snomed.info/sct/731000124108/extra",
        "http://snomed.info/sct/version/20250301",
        "http://snomed.info/sctx/731000124108",
        "http://snomed.info/sct/abc",
    ],
)
def test_other_uris_under_snomed_are_not_folded(t: Terminology, system: str) -> None:
    assert t.canonical_system(system) != "http://snomed.info/sct"
    assert t.concepts_of_coding(system, "15724005") == frozenset()


def test_every_coding_is_read_not_only_the_first(t: Terminology) -> None:
    epic_style = {
        "coding": [{"system": "http://www.imohealth.com/codes", "code": "1234"}, {"system": ICD, "code": "M80.08XA"}]
    }
    assert "vcf-osteoporotic" in t.concepts_of(epic_style)


@pytest.mark.parametrize(
    "concept",
    [None, [], {"coding": "M80.08XA"}, {"coding": [None, {"system": ICD, "code": ["M80.08XA"]}, {"code": "M80.08XA"}]}],
)
def test_malformed_codeable_concepts_match_nothing(t: Terminology, concept: object) -> None:
    assert t.concepts_of(concept) == frozenset()
    assert t.concepts_of(concept) == frozenset()  # the second time from the cache


def test_drug_names_match_product_text(t: Terminology) -> None:
    assert "anticoagulant" in t.concepts_in_text("Warfarin Sodium 5 MG Oral Tablet")
    assert "osteoporosis-therapy" in t.concepts_in_text("Alendronic acid 10 MG [Fosamax]")
    assert not t.concepts_in_text("Acetaminophen 325 MG Oral Tablet")


def test_site_mappings_merge_over_shipped(tmp_path: Path) -> None:
    site = {
        "resourceType": "ValueSet",
        "id": "site-pain",
        "url": "http://vcf-cds.org/fhir/ValueSet/pain-nrs",
        "status": "active",
        "compose": {"include": [{"system": "urn:epic:flowsheet", "concept": [{"code": "1234"}]}]},
    }
    (tmp_path / "site.json").write_bytes(orjson.dumps(site))
    t = load_terminology(tmp_path)
    assert "pain-nrs" in t.concepts_of_coding("urn:epic:flowsheet", "1234")
    assert "pain-nrs" in t.concepts_of_coding("http://loinc.org", "72514-3")  # shipped codes kept
    assert t.digest != load_terminology().digest  # the rules version names the site mappings


@pytest.mark.parametrize("system", [ICD, "http://www.whocc.no/atc", "http://snomed.info/sct"])
def test_a_huge_code_is_looked_up_in_linear_time(t: Terminology, system: str) -> None:
    # prefix rules were tried at every length of the code: minutes for 200 kB, hours for 10 MB
    start = time.monotonic()
    assert t.concepts_of_coding(system, "M80.08" + "X" * 1_000_000) == (
        frozenset({"vcf-osteoporotic", "osteoporosis"}) if system == ICD else frozenset()
    )
    assert time.monotonic() - start < 5  # ~0.1 s; generous for slow CI machines
