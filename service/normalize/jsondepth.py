"""How deeply a JSON text nests, measured on the text, in C.

FHIR model validation recurses per level of a resource and overflows Python's stack long before
orjson's own bound (1,024 levels): ~250 nested extensions were enough. Real resources nest ~10
levels, so what is validated is bounded well below that.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 64

_ESCAPE = re.compile(rb"\\.", re.S)  # \" \\ \n…: once gone, every quote opens or closes a string
_BRACKETS_ONLY = bytes.maketrans(b"{[}]", b"(())")  # one kind of pair: one replace() peels one level
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'{}[]"'))
_STRING = re.compile(rb'"[^"]*"')


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the containers of ``raw`` (a JSON text orjson has accepted) nest deeper than ``limit``.

    Measured on the text, so that the work is done in C (faster than walking the parsed value):
    with escapes, strings and scalars gone only brackets are left, as ``()``; each ``replace`` then
    deletes the innermost pairs, one level. No recursion: a hostile body cannot exhaust the stack."""
    text = _ESCAPE.sub(b"", raw) if b"\\" in raw else raw
    # adjacent quotes are an empty string or two strings with nothing between: dropping them is safe
    brackets = text.translate(_BRACKETS_ONLY, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)  # strings holding brackets
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)
