"""Codes live only in mappings/ as data (STYLE.md): no code-shaped string literal under service/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"

# whole string literals shaped like a code of a terminology the service matches on
CODE_SHAPES = {
    "SNOMED CT": re.compile(r"\d{6,18}"),  # SCTIDs are 6 to 18 digits
    "CPT": re.compile(r"\d{4}[\dFTU]"),
    "LOINC": re.compile(r"\d{1,5}-\d"),
    "ICD-10": re.compile(r"[A-TV-Z]\d[\dA-Z](\.?[\dA-Z]{1,4})?"),
}
# RxNorm CUIs of 1 to 5 digits look like any number: the SNOMED shape catches the longer ones only
# protocol constants that happen to have a code's shape
NOT_CODES = {"S256"}  # the PKCE code_challenge_method of the SMART app (RFC 7636), not ICD-10 S25.6


def string_literals(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def code_shaped(text: str) -> list[str]:
    return [name for name, shape in CODE_SHAPES.items() if shape.fullmatch(text.strip())]


def test_no_code_literal_under_service() -> None:
    found = [
        f"{path.relative_to(SERVICE)}:{line}: {text!r} looks like {', '.join(kinds)}"
        for path in sorted(SERVICE.rglob("*.py"))
        for line, text in string_literals(path.read_text())
        if (kinds := code_shaped(text)) and text not in NOT_CODES
    ]
    assert found == [], "move these codes to a value set in mappings/:\n" + "\n".join(found)


@pytest.mark.parametrize("code", ["363679005", "77080", "22510", "72514-3", "S220", "S32.010A", "M80.08XA"])
def test_the_shapes_catch_the_codes_that_were_once_inline(code: str) -> None:
    assert code_shaped(code)


@pytest.mark.parametrize("text", ["S22.0 check", "2048", "P-384", "ES384", "vcf-patient-view", "0.5", "503"])
def test_the_shapes_leave_ordinary_strings_alone(text: str) -> None:
    assert not code_shaped(text)
