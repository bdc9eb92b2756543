"""Value sets from ``mappings/`` (FHIR ValueSet JSON) and matching of codings against them.

Codes are matched on the ``(system, code)`` pair. System aliases (the ``icd-10`` URI, urn:oid forms)
and SNOMED CT edition URIs sent as the system (``http://snomed.info/sct/<module>[/version/<date>]``)
are folded onto one canonical URI. ICD-10 hierarchy: an ``is-a`` filter value is a code prefix,
compared without dots, so ``M80.08`` covers ``M80.08XA`` and ``M8008XA``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TEXT_MATCH_URL = "http://vcf-cds.org/fhir/StructureDefinition/text-match"
ORDINAL_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"  # an answer's score (pain-answer)
VALUESET_BASE = "http://vcf-cds.org/fhir/ValueSet/"
_DRUG_SYSTEMS = {RXNORM, "http://www.whocc.no/atc"}
_HIERARCHICAL = {ICD10_CM, "http://www.cms.gov/Medicare/Coding/ICD10", "http://www.whocc.no/atc"}
_NONE: frozenset[str] = frozenset()


class MappingError(Exception):
    """A mapping file is unreadable or not a valid value set."""


def shipped_mappings_dir() -> Path:
    """``mappings/`` inside an installed wheel, else at the top of the source tree."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "mappings", package.parent / "mappings"):
        if candidate.is_dir():
            return candidate
    raise MappingError("mappings/ folder not found beside the service package")


@dataclass
class _Rules:
    """The code rules of one value set (its include or its exclude part)."""

    exact: set[tuple[str, str]] = field(default_factory=set)
    prefixes: set[tuple[str, str]] = field(default_factory=set)
    patterns: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    # of enumerated concepts: the display (a vertebra's level) and the ordinalValue (an answer's score)
    displays: dict[tuple[str, str], str] = field(default_factory=dict)
    scores: dict[tuple[str, str], float] = field(default_factory=dict)

    def matches(self, system: str, dotted: str, dotless: str) -> bool:
        if (system, dotted) in self.exact or (system, dotless) in self.exact:
            return True
        # only as many prefixes as the longest rule: a code from the request may be megabytes long
        longest = max((len(prefix) for _, prefix in self.prefixes), default=0)
        if any((system, dotless[:n]) in self.prefixes for n in range(1, min(len(dotless), longest) + 1)):
            return True
        return any(s == system and p.fullmatch(dotted) for s, p in self.patterns)


@dataclass
class ValueSetRules:
    id: str
    url: str
    include: _Rules = field(default_factory=_Rules)
    exclude: _Rules = field(default_factory=_Rules)
    keywords: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


class Terminology:
    """All loaded value sets, answering "which concepts does this coding belong to?"."""

    def __init__(
        self,
        valuesets: Iterable[ValueSetRules],
        aliases: Mapping[str, str],
        digest: str = "",
        editions: Mapping[str, str] | None = None,
    ):
        self.valuesets = {vs.id: vs for vs in valuesets}
        self.digest = digest  # identifies the exact mappings in use (shipped + site)
        self.aliases = dict(aliases)
        # system URI patterns (systems.json edition_patterns) and the canonical URI each folds onto
        self.editions = [(re.compile(pattern), canonical) for pattern, canonical in (editions or {}).items()]
        self._cache: dict[tuple[str, str], frozenset[str]] = {}
        self._keyword_patterns = {
            vs.id: re.compile(r"\b(" + "|".join(re.escape(k) for k in vs.keywords) + r")\b", re.I)
            for vs in self.valuesets.values()
            if vs.keywords
        }

    # -- matching --------------------------------------------------------------------------
    def canonical_system(self, system: str) -> str:
        system = system.strip().rstrip("/")
        system = self.aliases.get(system, system)
        # an edition URI names the same concept identifiers as the international edition
        return next((canonical for pattern, canonical in self.editions if pattern.fullmatch(system)), system)

    def concepts_of_coding(self, system: Any, code: Any) -> frozenset[str]:
        if not isinstance(system, str) or not isinstance(code, str) or not code.strip():
            return frozenset()
        key = (system, code)
        found = self._cache.get(key)
        if found is None:
            found = self._lookup(self.canonical_system(system), code)
            if len(self._cache) < 100_000:  # bounded: codes come from untrusted input
                self._cache[key] = found
        return found

    def _lookup(self, system: str, code: str) -> frozenset[str]:
        dotted, dotless = _code_forms(system, code)
        return frozenset(
            vs.id
            for vs in self.valuesets.values()
            if vs.include.matches(system, dotted, dotless) and not vs.exclude.matches(system, dotted, dotless)
        )

    def concepts_of(self, concept: Any) -> frozenset[str]:
        """Concepts of every coding of a CodeableConcept (all codings, not only the first)."""
        if not isinstance(concept, dict):
            return _NONE
        codings = concept.get("coding")
        if not isinstance(codings, list):
            return _NONE
        # called for every resource of a record: the cache is read inline, no set is built on a miss
        found, cache = _NONE, self._cache
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            system: Any = coding.get("system")
            code: Any = coding.get("code")
            try:
                more = cache[(system, code)]
            except (KeyError, TypeError):  # not seen yet, or not strings (unhashable JSON)
                more = self.concepts_of_coding(system, code)
            if more:
                found = found | more if found else more
        return found

    def _enumerated(self, vs_id: str, concept: Any) -> list[tuple[str, str]]:
        """The (system, code) pairs of a CodeableConcept's codings listed by one value set, in order."""
        vs = self.valuesets.get(vs_id)
        if vs is None or not isinstance(concept, dict):
            return []
        codings = concept.get("coding")
        out = []
        for coding in codings if isinstance(codings, list) else []:
            if not isinstance(coding, dict):
                continue
            if vs_id not in self.concepts_of_coding(coding.get("system"), coding.get("code")):
                continue
            system = self.canonical_system(str(coding["system"]))
            out.append((system, _code_forms(system, str(coding["code"]))[0]))
        return out

    def score(self, vs_id: str, concept: Any) -> float | None:
        """The ordinalValue a value set gives the first of a CodeableConcept's codings it lists, if any."""
        scores = self.valuesets[vs_id].include.scores if vs_id in self.valuesets else {}
        return next((scores[p] for p in self._enumerated(vs_id, concept) if p in scores), None)

    def displays(self, vs_id: str, concept: Any) -> list[str]:
        """The value set's own displays of the codings of a CodeableConcept it lists."""
        displays = self.valuesets[vs_id].include.displays if vs_id in self.valuesets else {}
        return [displays[p] for p in self._enumerated(vs_id, concept) if p in displays]

    def concepts_in_text(self, *texts: Any) -> frozenset[str]:
        """Concepts whose keywords (text-match extension, RxNorm ingredient names) occur in text."""
        joined = " ".join(t for t in texts if isinstance(t, str))
        if not joined:
            return frozenset()
        return frozenset(vs_id for vs_id, p in self._keyword_patterns.items() if p.search(joined))

    def codings_for(self, concept_ids: Iterable[str]) -> list[tuple[str, str]]:
        """The enumerated (system, code) pairs of some value sets, for narrowing FHIR searches."""
        pairs: set[tuple[str, str]] = set()
        for vs_id in concept_ids:
            pairs |= self.valuesets[vs_id].include.exact
        return sorted(pairs)


def _code_forms(system: str, code: str) -> tuple[str, str]:
    """(dotted, dotless) forms; for ICD codes upper-cased with the dot after the category."""
    code = code.strip()
    if system not in _HIERARCHICAL:
        return code, code
    dotless = code.upper().replace(".", "")
    dotted = dotless[:3] + "." + dotless[3:] if len(dotless) > 3 and system == ICD10_CM else dotless
    return dotted, dotless


# -- loading ---------------------------------------------------------------------------------
def load_terminology(extra_dir: str | Path | None = None) -> Terminology:
    """Shipped value sets, with any in ``extra_dir`` merged over them (same url: includes added)."""
    shipped = shipped_mappings_dir()
    systems = orjson.loads((shipped / "systems.json").read_bytes())
    aliases, editions = systems.get("aliases", {}), systems.get("edition_patterns", {})
    valuesets: dict[str, ValueSetRules] = {}
    digest = hashlib.sha256()
    for folder in [shipped] + ([Path(extra_dir)] if extra_dir else []):
        if not folder.is_dir():
            raise MappingError(f"mappings folder {folder} does not exist")
        for path in sorted(folder.glob("*.json")):
            digest.update(path.read_bytes())
            resource = _read_json(path)
            if resource.get("resourceType") != "ValueSet":
                continue
            rules = parse_valueset(resource, aliases, source=path.name)
            known = valuesets.get(rules.url)
            valuesets[rules.url] = merge(known, rules) if known else rules
    return Terminology(valuesets.values(), aliases, digest.hexdigest()[:12], editions)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise MappingError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise MappingError(f"{path}: not a JSON object")
    return data


def parse_valueset(resource: dict[str, Any], aliases: Mapping[str, str], source: str) -> ValueSetRules:
    url = resource.get("url")
    vs_id = resource.get("id")
    if not isinstance(url, str) or not isinstance(vs_id, str):
        raise MappingError(f"{source}: ValueSet needs an id and a url")
    if url.startswith(VALUESET_BASE):
        vs_id = url.removeprefix(VALUESET_BASE)  # site files keep the shipped concept id
    compose = resource.get("compose") or {}
    rules = ValueSetRules(id=vs_id, url=url, sources=[source])
    for part, target in (("include", rules.include), ("exclude", rules.exclude)):
        for entry in compose.get(part) or []:
            _add_rules(entry, target, aliases, source)
            if part == "include" and aliases.get(entry.get("system"), entry.get("system")) in _DRUG_SYSTEMS:
                # drug ingredient names double as keywords: orders are coded as products, or as text
                for c in entry.get("concept") or []:
                    rules.keywords += [
                        n
                        for n in [c.get("display")] + [d.get("value") for d in c.get("designation") or []]
                        if isinstance(n, str) and n
                    ]
    rules.keywords += [
        ext["valueString"]
        for ext in resource.get("extension") or []
        if ext.get("url") == TEXT_MATCH_URL and isinstance(ext.get("valueString"), str)
    ]
    return rules


def _add_rules(entry: dict[str, Any], target: _Rules, aliases: Mapping[str, str], source: str) -> None:
    system = entry.get("system")
    if not isinstance(system, str):
        raise MappingError(f"{source}: every include/exclude needs a system")
    system = aliases.get(system, system)
    for concept in entry.get("concept") or []:
        pair = (system, _code_forms(system, concept["code"])[0])
        target.exact.add(pair)
        if isinstance(concept.get("display"), str):
            target.displays[pair] = concept["display"]
        for ext in concept.get("extension") or []:
            value = ext.get("valueDecimal", ext.get("valueInteger"))
            if ext.get("url") == ORDINAL_URL and isinstance(value, (int, float)) and not isinstance(value, bool):
                target.scores[pair] = float(value)
    for flt in entry.get("filter") or []:
        op, value = flt.get("op"), flt.get("value")
        if op == "is-a" and isinstance(value, str):
            target.prefixes.add((system, _code_forms(system, value)[1]))
        elif op == "regex" and isinstance(value, str):
            try:
                target.patterns.append((system, re.compile(value)))
            except re.error as e:
                raise MappingError(f"{source}: bad regex {value!r}: {e}") from e
        else:
            raise MappingError(f"{source}: unsupported filter {flt!r} (is-a and regex only)")


def merge(base: ValueSetRules, extra: ValueSetRules) -> ValueSetRules:
    merged = ValueSetRules(id=base.id, url=base.url, sources=base.sources + extra.sources)
    for part in ("include", "exclude"):
        a, b, m = getattr(base, part), getattr(extra, part), getattr(merged, part)
        m.exact = a.exact | b.exact
        m.prefixes = a.prefixes | b.prefixes
        m.patterns = a.patterns + b.patterns
        m.displays = {**b.displays, **a.displays}  # shipped displays and scores win: sites only add
        m.scores = {**b.scores, **a.scores}
    merged.keywords = base.keywords + extra.keywords
    return merged


def overlaps(terminology: Terminology) -> dict[tuple[str, str], list[str]]:
    """Enumerated codes claimed by two or more value sets (for ``check-mappings``)."""
    claims: dict[tuple[str, str], list[str]] = defaultdict(list)
    for vs in terminology.valuesets.values():
        for pair in vs.include.exact:
            claims[pair].append(vs.id)
    for pair, ids in claims.items():
        for vs in terminology.valuesets.values():
            if vs.id not in ids and vs.include.matches(pair[0], *_code_forms(*pair)):
                ids.append(vs.id)
    return {pair: sorted(ids) for pair, ids in claims.items() if len(ids) > 1}
