"""FHIR R4 validation (``fhir.resources.R4B``) of the resources the decision reads, remembered.

Validation costs far more than parsing a resource (benchmarks/RESULTS.md, "Measurements the code
relies on"), so it is the largest cost of a hook call that ``normalize`` keeps to the ~10 resources
the decision reads. It is also a pure function of the
resource, and the same resources come back call after call: patient-view on each opening of a
chart, then order-select and order-sign for each order. So what it found is remembered, per process,
by a digest of the resource's JSON: a resource seen before costs its serialisation and a hash.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

from ..errors import InvalidResourceError
from ..observe.redact import describe, safe_name
from .jsondepth import MAX_JSON_DEPTH, json_depth_exceeds
from .jsontypes import wrong_json_types

# What the decision reads of a Patient. PRODUCT.md: 400 for "invalid FHIR that the decision
# needs"; names, addresses and extensions, which it does not read, are most of the cost of
# validating a whole Patient (benchmarks/RESULTS.md, "Measurements the code relies on").
PATIENT_READ = ("resourceType", "id", "birthDate", "_birthDate")
MEMO_CAPACITY = 20_000  # digests of 16 bytes and short messages: ~4 MB at most per process

Problem = str | None  # None: valid; else why not, naming fields, never values (PHI)
TOO_DEEP = f"nests JSON deeper than {MAX_JSON_DEPTH} levels"


def validate(resource: Mapping[str, Any], what: str) -> None:
    """Raise ``InvalidResourceError`` naming ``what`` when ``resource`` is not valid FHIR R4."""
    if resource.get("resourceType") == "Patient":
        resource = {k: v for k, v in resource.items() if k in PATIENT_READ}
    problem = _memo.problem(resource)
    if problem is not None:
        raise InvalidResourceError(f"{what} {problem}")


def problem_of(resource: Mapping[str, Any]) -> Problem:
    """What is wrong with ``resource`` as FHIR R4, without remembering it."""
    resource_type = resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(resource_type))
    except (KeyError, ValueError, AttributeError):
        return f"has unknown resourceType '{safe_name(resource_type)}'"
    try:
        model.model_validate(resource)
    except RecursionError:  # the models validate nested elements recursively
        return f"is nested too deeply to be valid FHIR R4 {resource_type}"
    except Exception as e:  # fhir.resources also raises KeyError, TypeError… on malformed input
        return f"is not valid FHIR R4 {resource_type}: {describe(e)}"
    wrong = wrong_json_types(resource)
    if wrong:
        return f"is not valid FHIR R4 {resource_type}: {'; '.join(wrong[:3])}"
    return None


class ValidationMemo:
    """``problem_of`` by a 128-bit digest of the resource's JSON; least recently used out first.

    Holds digests and messages, never resource content. Thread-safe (gunicorn threads share it);
    validation itself runs outside the lock.
    """

    def __init__(self, capacity: int = MEMO_CAPACITY):
        self.capacity = capacity
        self._found: OrderedDict[bytes, Problem] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._found)

    def problem(self, resource: Mapping[str, Any]) -> Problem:
        try:
            text = orjson.dumps(resource)
        except orjson.JSONEncodeError as e:  # beyond 255 levels, or not JSON (a caller in Python)
            return TOO_DEEP if "Recursion" in str(e) else problem_of(resource)
        key = hashlib.blake2b(text, digest_size=16).digest()
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]
        # the bound of what the models recurse into (jsondepth.py); hook bodies are not bounded whole
        found = TOO_DEEP if json_depth_exceeds(text, MAX_JSON_DEPTH) else problem_of(resource)
        with self._lock:
            self._found[key] = found
            if len(self._found) > self.capacity:
                self._found.popitem(last=False)
        return found


_memo = ValidationMemo()


def load_models(resource_types: tuple[str, ...]) -> None:
    """Import the R4B models at start-up (before the worker freezes its start-up heap, see
    ``server.freeze_startup_heap``), not during the first request."""
    for resource_type in resource_types:
        get_fhir_model_class(resource_type)
