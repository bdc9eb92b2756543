"""The README documents every setting and every service (Datasette's test_docs idea)."""

from __future__ import annotations

from flask.testing import FlaskClient

from service.config import PREFIX, SETTINGS

from conftest import ROOT

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
