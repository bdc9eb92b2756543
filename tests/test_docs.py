"""The README documents every setting and every service (Datasette's test_docs idea)."""

from __future__ import annotations

import json
import re

from flask.testing import FlaskClient

from service.auth.issuers import parse_issuers
from service.config import PREFIX, SETTINGS

from support.paths import CONFORMANCE, ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    undocumented = [PREFIX + s.name for s in SETTINGS if f"`{PREFIX}{s.name}`" not in README]
    assert undocumented == []


def test_every_service_is_in_the_readme(client: FlaskClient) -> None:
    ids = [s["id"] for s in client.get("/cds-services").get_json()["services"]]
    assert [i for i in ids if f"`{i}`" not in README] == []


def test_readme_opens_with_the_two_commands() -> None:
    head = README.split("## ")[0]
    assert "bash scripts/serve" in head and "bash scripts/test" in head
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_sandbox_issuer_file_trusts_the_sandbox_key() -> None:
    section = README.split("### Trusting the CDS Hooks sandbox")[1].split("\n### ")[0]
    block = section.split("```json\n")[1].split("```")[0]
    registry = parse_issuers(json.loads(block))
    sandbox = registry.get("https://sandbox.cds-hooks.org")
    published = json.loads((CONFORMANCE / "cds-hooks-sandbox" / "jwks.json").read_text())["keys"]
    assert sandbox is not None and list(sandbox.keys) == published
    assert sandbox.jku == ("https://sandbox.cds-hooks.org/.well-known/jwks.json",)


def test_readme_explains_authentication() -> None:
    section = README.split("## Authentication and CORS")[1].split("\n## ")[0]
    for topic in ("PyJWT", "trusted-issuer file", "several workers or replicas", "CDS Hooks sandbox", "CORS"):
        assert topic in section, topic


def test_every_variable_read_anywhere_is_a_declared_setting() -> None:
    # os.environ reads outside config.py, the Dockerfile and the compose file must not invent settings
    declared = {PREFIX + s.name for s in SETTINGS}
    sources = [*(ROOT / "service").rglob("*.py"), ROOT / "Dockerfile", ROOT / "docker-compose.yml"]
    used = {name for path in sources for name in re.findall(r"\bVCF_CDS_[A-Z0-9_]+\b", path.read_text())}
    assert "VCF_CDS_AUDIT_KEY" in used and "VCF_CDS_DATABASE_URL" in used  # the scan sees them
    assert used - declared == set()
    assert [name for name in used if f"`{name}`" not in README] == []


def test_test_only_variables_are_documented() -> None:
    scripts = " ".join(p.read_text() for p in (ROOT / "scripts").iterdir())
    for name in set(re.findall(r"\bVCF_CDS_[A-Z0-9_]+\b", scripts)):
        assert f"`{name}" in README, name


def test_readme_has_the_product_sections() -> None:
    for section in ("## Install", "## Run\n", "## Test", "## Configure", "## Run in containers", "## Services"):
        assert section in README, section
