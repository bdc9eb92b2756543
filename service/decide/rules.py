"""The decision table of CLINICAL.md as data: ordered rows over a derived ``Situation``.

Unknown stays unknown (``None``): a criterion on an unknown fact is ``unknown`` and its fact is
listed in ``missing``; no row treats unknown as negative.

One module, over 350 lines, on purpose: the rows, the criteria they show and the situation they
read are checked against CLINICAL.md together; spread over files, one row would be read in three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from . import thresholds as T
from .facts import Facts, Finding, Reading, Refs, in_future, whole_days
from .levels import count_levels

RULES_VERSION = "2026.12"

Dated = TypeVar("Dated", Reading, Finding)

Status = Literal["met", "not-met", "unknown"]


@dataclass(frozen=True)
class Criterion:
    id: str
    label: str
    status: Status
    source: str
    fact: str  # what to document when the status is unknown
    evidence: Refs = ()
    note: str = ""


@dataclass(frozen=True)
class Caution:
    id: str
    text: str
    source: str
    evidence: Refs = ()


@dataclass(frozen=True)
class SecondaryPrevention:
    indicator: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class Assessment:
    row: int
    headline: str
    recommendation: str  # conservative | augmentation | referral
    referral: str | None
    indicator: str
    pathway: str
    procedure: str | None
    criteria: tuple[Criterion, ...]
    cautions: tuple[Caution, ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]
    fracture_refs: Refs
    fracture_age_days: int | None
    pain: float | None
    secondary_prevention: SecondaryPrevention | None = None
    rules_version: str = RULES_VERSION


# -- the situation: facts reduced to what the rows read ----------------------------------------
@dataclass(frozen=True)
class Situation:
    facts: Facts
    age_years: int | None
    fracture_age_days: int | None
    onset_estimated: bool
    pathway: str
    red_flags: Refs
    infection: Refs
    malignancy: Refs
    pregnancy: Refs
    pain: Reading | None
    worsening: bool | None
    worsening_refs: Refs
    hospitalised: bool | None
    tenderness: Finding | None
    edema: Finding | None
    sins: Finding | None
    height_loss: Finding | None
    kyphosis: bool | None
    kyphosis_refs: Refs = field(default=())
    future_onset: bool = False  # an onset date after tomorrow was ignored
    non_healing: Refs = ()  # fractures coded delayed healing (G) or nonunion (K)

    def pain_at_least(self, t: T.Threshold) -> bool | None:
        return None if self.pain is None else self.pain.value >= t.value

    def band(self) -> str | None:
        d = self.fracture_age_days
        if d is None:
            return None
        if d < T.CONSERVATIVE_TRIAL.value:
            return "early"
        if d <= T.SUBACUTE.value:
            return "subacute"
        return "late" if d <= T.CHRONIC.value else "chronic"


def _latest(items: tuple[Dated, ...], now: datetime, max_days: float | None) -> Dated | None:
    """The newest item not in the future (1-day grace for clock skew), if within ``max_days`` whole days."""
    for item in reversed(items):
        when = item.when
        if when is None:
            continue
        if in_future(when, now):
            continue
        return item if max_days is None or whole_days(when, now) <= max_days else None
    return None


def _age_years(facts: Facts) -> int | None:
    b, today = facts.birth_date, facts.now.date()
    if b is None or b > today:
        return None
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


NEOPLASTIC = ("neoplastic-fracture", "multiple-myeloma", "plasmacytoma", "bone-metastasis", "vertebral-malignancy")


def _pathway(facts: Facts, age: int | None) -> str:
    # a healed fracture (7th character P/S) beside the active one still says what kind of patient this is
    kinds = {f.kind for f in facts.fractures + facts.prior_fractures}
    if facts.refs(*NEOPLASTIC) or "neoplastic" in kinds:
        return "neoplastic"
    if facts.refs("osteoporosis") or "osteoporotic" in kinds:
        return "osteoporotic"
    if age is not None and age >= T.OSTEOPOROTIC_AGE.value:
        return "osteoporotic"  # traumatic/unspecified code at ≥ 50: treated as fragility fracture
    if age is not None and "traumatic" in kinds:
        return "traumatic"
    return "unknown"


def _worsening(pain: tuple[Reading, ...], latest: Reading | None) -> tuple[bool | None, Refs]:
    """Latest score against the newest score taken ≥ 7 days before it."""
    if latest is None:
        return None, ()
    for earlier in reversed(pain):
        if (latest.when - earlier.when).total_seconds() >= T.WORSENING_GAP.value * 86400:
            rise = latest.value - earlier.value >= T.WORSENING_RISE.value
            return rise, (earlier.ref, latest.ref)
    return None, ()


def _pregnancy(facts: Facts) -> Refs:
    """Pregnancy evidence not ended by a later end-of-pregnancy code (rules 2026.12, Time).

    Evidence: an active pregnancy Condition dated (onset, else recordedDate) within 280 days, or the
    latest hCG within 280 days if positive (a later negative overrides it). A delivery, abortive
    outcome or postpartum code dated on or after the evidence ends it. A pregnancy Condition with
    neither onset nor recordedDate is not evidence: the definition asks for a date within 280 days,
    and an undated one is not within (nor could a dated delivery ever end it).
    """
    now, window = facts.now, T.PREGNANCY_TEST_MAX_AGE.value
    evidence = [
        (e.ref, e.when)
        for e in facts.events.get("pregnancy", ())
        if e.when is not None and not in_future(e.when, now) and whole_days(e.when, now) <= window
    ]
    test = _latest(facts.findings.get("hcg", ()), now, window)
    if test and test.present and test.when is not None:  # _latest returns dated items only
        evidence.append((test.ref, test.when))
    ends = [e.when for e in facts.events.get("pregnancy-end", ()) if e.when is not None and not in_future(e.when, now)]
    return tuple(ref for ref, when in evidence if not any(end >= when for end in ends))


def situate(facts: Facts) -> Situation:
    now = facts.now
    age = _age_years(facts)
    # an onset more than a day after now (grace for time zones) is a wrong date: unknown, like no date
    onsets = [f for f in facts.fractures if f.onset is not None and not in_future(f.onset, now)]
    # same newest date on several fractures: prefer an exact onset, then the reference (order-independent)
    newest = max(onsets, key=lambda f: (f.onset, not f.onset_estimated, f.ref)) if onsets else None
    pathway = _pathway(facts, age)
    findings = facts.findings
    pain_readings = facts.readings.get("pain", ())
    pain = _latest(pain_readings, now, T.PAIN_MAX_AGE.value)
    worsening, worsening_refs = (
        _worsening(tuple(r for r in pain_readings if r.when <= pain.when), pain) if pain else (None, ())
    )
    deficit = _latest(findings.get("neurologic-deficit", ()), now, None)
    red_flags = facts.refs("red-flag") + ((deficit.ref,) if deficit and deficit.present else ())
    kyphosis_finding = _latest(findings.get("kyphotic-deformity", ()), now, None)
    kyphosis_refs = facts.refs("kyphosis") + (
        (kyphosis_finding.ref,) if kyphosis_finding and kyphosis_finding.present else ()
    )
    kyphosis = True if kyphosis_refs else (kyphosis_finding.present if kyphosis_finding else None)
    hospitalised: bool | None = bool(facts.hospital_encounters)
    if not hospitalised and "encounters" in facts.unavailable:
        hospitalised = None
    return Situation(
        facts=facts,
        age_years=age,
        fracture_age_days=max(0, whole_days(newest.onset, now)) if newest and newest.onset else None,
        onset_estimated=bool(newest and newest.onset_estimated),
        pathway=pathway,
        red_flags=red_flags,
        infection=facts.refs("spinal-infection", "sepsis"),
        malignancy=facts.refs("cancer") if pathway != "neoplastic" else (),
        pregnancy=_pregnancy(facts),
        pain=pain,
        worsening=worsening,
        worsening_refs=worsening_refs,
        hospitalised=hospitalised,
        tenderness=_latest(findings.get("point-tenderness", ()), now, None),
        edema=_latest(findings.get("marrow-edema", ()), now, None),
        sins=_latest(findings.get("sins", ()), now, None),
        height_loss=_latest(findings.get("height-loss", ()), now, None),
        kyphosis=kyphosis,
        kyphosis_refs=kyphosis_refs,
        future_onset=any(f.onset is not None and in_future(f.onset, now) for f in facts.fractures),
        non_healing=tuple(f.ref for f in facts.fractures if f.non_healing),
    )


# -- the rows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    number: int
    headline: str
    when: Callable[[Situation], bool]
    recommendation: str
    indicator: Callable[[Situation], str]
    referral: str | None = None


def _fixed(indicator: str) -> Callable[[Situation], str]:
    return lambda s: indicator


def _sins_at_least(s: Situation, t: T.Threshold) -> bool:
    return s.sins is not None and s.sins.value is not None and s.sins.value >= t.value


def _band(name: str) -> Callable[[Situation], bool]:
    return lambda s: s.pathway != "neoplastic" and s.band() == name


ROWS: tuple[Row, ...] = (
    Row(
        1,
        "Red flag with the vertebral fracture: urgent spine surgery referral",
        lambda s: bool(s.red_flags),
        "referral",
        _fixed("critical"),
        "spine-surgery",
    ),
    Row(
        2,
        "Spinal infection: refer; vertebral augmentation is contraindicated",
        lambda s: bool(s.infection),
        "referral",
        _fixed("critical"),
        "infection",
    ),
    Row(
        3,
        "Possible malignant fracture: oncology work-up and biopsy before any augmentation",
        lambda s: bool(s.malignancy),
        "referral",
        _fixed("critical"),
        "oncology",
    ),
    Row(
        4,
        "Traumatic vertebral fracture: spine surgery referral",
        lambda s: s.pathway == "traumatic",
        "referral",
        _fixed("warning"),
        "spine-surgery",
    ),
    Row(
        5,
        "Pregnancy: conservative care; vertebral augmentation is contraindicated",
        lambda s: bool(s.pregnancy),
        "conservative",
        _fixed("warning"),
    ),
    Row(
        6,
        "Neoplastic fracture with SINS ≥ 7: spine surgery consultation for stability",
        lambda s: s.pathway == "neoplastic" and _sins_at_least(s, T.SINS_SURGICAL),
        "referral",
        lambda s: "critical" if _sins_at_least(s, T.SINS_UNSTABLE) else "warning",
        "spine-surgery",
    ),
    Row(
        7,
        "Painful neoplastic fracture: vertebral augmentation, coordinated with oncology",
        lambda s: s.pathway == "neoplastic" and s.pain_at_least(T.PAIN_MIN) is True,
        "augmentation",
        _fixed("warning"),
    ),
    Row(
        8,
        "Neoplastic fracture without significant pain: conservative care, reassess pain",
        lambda s: s.pathway == "neoplastic",
        "conservative",
        _fixed("info"),
    ),
    Row(
        9,
        "Chronic fracture (> 52 weeks): conservative or pain service; augmentation not indicated",
        _band("chronic"),
        "conservative",
        _fixed("info"),
    ),
    Row(
        10,
        "Early fracture, hospitalised with severe pain: early vertebral augmentation",
        lambda s: _band("early")(s) and s.hospitalised is True and s.pain_at_least(T.PAIN_HOSPITALISED) is True,
        "augmentation",
        _fixed("warning"),
    ),
    Row(
        11,
        "Fracture under 3 weeks: conservative care (analgesia, brace, physiotherapy); reassess at 3 weeks",
        _band("early"),
        "conservative",
        _fixed("info"),
    ),
    Row(
        12,
        "Subacute fracture with severe or worsening pain: vertebral augmentation",
        lambda s: (
            _band("subacute")(s)
            and s.pain_at_least(T.PAIN_MIN) is True
            and (s.worsening is True or s.pain_at_least(T.PAIN_SEVERE) is True or s.hospitalised is True)
        ),
        "augmentation",
        _fixed("warning"),
    ),
    Row(
        13,
        "Fracture of 3–6 weeks: continue conservative care; reassess",
        _band("subacute"),
        "conservative",
        _fixed("info"),
    ),
    Row(
        14,
        "Persistent painful fracture localised by exam or MRI: vertebral augmentation",
        lambda s: (
            _band("late")(s)
            and s.pain_at_least(T.PAIN_MIN) is True
            and (_present(s.tenderness) is True or _present(s.edema) is True)
        ),
        "augmentation",
        _fixed("warning"),
    ),
    Row(
        15,
        "Pain not attributable to the fracture (no tenderness, no edema): conservative care",
        lambda s: (
            _band("late")(s)
            and s.pain_at_least(T.PAIN_MIN) is True
            and _present(s.tenderness) is False
            and _present(s.edema) is False
        ),
        "conservative",
        _fixed("info"),
    ),
    Row(
        16,
        "Conservative care; document what is missing before considering augmentation",
        lambda s: True,
        "conservative",
        _fixed("info"),
    ),
)


def _present(f: Finding | None) -> bool | None:
    return None if f is None else f.present


# -- criteria ----------------------------------------------------------------------------------
def _status(value: bool | None) -> Status:
    return "unknown" if value is None else "met" if value else "not-met"


def _absent(id_: str, label: str, refs: Refs, source: str, fact: str) -> Criterion:
    """A 'no X documented' criterion: coded diagnoses are read as the problem list says."""
    return Criterion(id_, label, "not-met" if refs else "met", source, fact, refs)


def _finding_criterion(id_: str, label: str, f: Finding | None, source: str) -> Criterion:
    return Criterion(id_, label, _status(_present(f)), source, id_, (f.ref,) if f else ())


def _criteria(s: Situation) -> list[Criterion]:
    f = s.facts
    pain_refs = (s.pain.ref,) if s.pain else ()
    pain_note = f"NRS {s.pain.value:g}" if s.pain else "no pain score in the last 30 days"

    def pain(id_: str, t: T.Threshold) -> Criterion:
        return Criterion(
            id_,
            f"Pain NRS ≥ {t.value:g} (latest, ≤ 30 days)",
            _status(s.pain_at_least(t)),
            t.source,
            "pain_score",
            pain_refs,
            pain_note,
        )

    age = s.fracture_age_days
    out = [
        Criterion(
            "active_vcf",
            "Active vertebral compression fracture documented",
            "met",
            "LCD-L38201",
            "vcf",
            tuple(x.ref for x in f.fractures),
        ),
        _absent(
            "no_red_flags",
            "No red flags (cord compression, cauda equina, unstable fracture, deficit)",
            s.red_flags,
            "ACR-AC",
            "red_flags",
        ),
        _absent("no_spinal_infection", "No spinal infection or sepsis", s.infection, "ACR-AC", "infection"),
        _absent("no_suspected_malignancy", "No unexplained active cancer", s.malignancy, "NASS-AUC", "malignancy"),
        _absent("not_pregnant", "Not pregnant", s.pregnancy, "ACR-AC", "pregnancy"),
    ]
    if s.pathway == "neoplastic":
        sins_value = s.sins.value if s.sins else None
        out += [
            pain("pain_nrs_5", T.PAIN_MIN),
            Criterion(
                "sins_below_7",
                "Spine stable: SINS < 7",
                _status(None if sins_value is None else sins_value < T.SINS_SURGICAL.value),
                T.SINS_SURGICAL.source,
                "sins",
                (s.sins.ref,) if s.sins else (),
                f"SINS {sins_value:g}" if sins_value is not None else "",
            ),
        ]
        return out
    age_note = f"{age} days ({age / 7:.0f} weeks)" if age is not None else "no onset date"
    # delayed healing (G) or nonunion (K) is coded: the fracture is documented as not healing
    # (PARMAR-2019), so the card must never call it healed, however old it is
    healing_note = ", coded as delayed healing or nonunion: not healed" if s.non_healing else ""
    out += [
        Criterion(
            "fracture_not_chronic",
            "Fracture ≤ 52 weeks old" + ("" if s.non_healing else " (not healed)"),
            _status(None if age is None else age <= T.CHRONIC.value),
            T.CHRONIC.source,
            "fracture_onset",
            tuple(dict.fromkeys(s.non_healing + tuple(x.ref for x in f.fractures))),
            age_note + healing_note,
        ),
        Criterion(
            "conservative_trial_3_weeks",
            "3 weeks of conservative care have passed",
            _status(None if age is None else age >= T.CONSERVATIVE_TRIAL.value),
            T.CONSERVATIVE_TRIAL.source,
            "fracture_onset",
            (),
            age_note,
        ),
    ]
    band = s.band()
    hosp = Criterion(
        "hospitalised",
        "Hospitalised (in-progress inpatient/emergency encounter)",
        _status(s.hospitalised),
        T.PAIN_HOSPITALISED.source,
        "hospitalisation",
        s.facts.hospital_encounters,
    )
    if band == "early":
        out += [pain("pain_nrs_5", T.PAIN_MIN), pain("pain_nrs_7", T.PAIN_SEVERE), hosp]
        both = (
            None if s.hospitalised is None else (False if not s.hospitalised else s.pain_at_least(T.PAIN_HOSPITALISED))
        )
        out.append(
            Criterion(
                "hospitalised_nrs_8",
                "Hospitalised with pain NRS ≥ 8",
                _status(both),
                T.PAIN_HOSPITALISED.source,
                "hospitalisation" if s.hospitalised is None else "pain_score",
                s.facts.hospital_encounters + pain_refs,
                pain_note,
            )
        )
    elif band == "subacute":
        out += [
            pain("pain_nrs_5", T.PAIN_MIN),
            Criterion(
                "pain_worsening",
                "Pain worsening (≥ 1 point over ≥ 7 days)",
                _status(s.worsening),
                T.WORSENING_RISE.source,
                "pain_trend",
                s.worsening_refs,
            ),
            pain("pain_nrs_7", T.PAIN_SEVERE),
            hosp,
        ]
    elif band in ("late", None):
        out += [
            pain("pain_nrs_5", T.PAIN_MIN),
            _finding_criterion(
                "point_tenderness", "Point tenderness at the fracture level", s.tenderness, "PARMAR-2019"
            ),
            _finding_criterion("marrow_edema", "MRI (STIR) marrow edema at the fracture level", s.edema, "NICE-TA279"),
        ]
    return out


def _cautions(s: Situation) -> tuple[list[Caution], list[str]]:
    """Relative contraindications, and the pre-procedure labs that are not known."""
    f, now = s.facts, s.facts.now
    out: list[Caution] = []
    missing: list[str] = []
    inr = _latest(f.readings.get("inr", ()), now, T.LAB_MAX_AGE.value)
    platelets = _latest(f.readings.get("platelets", ()), now, T.LAB_MAX_AGE.value)
    if inr is None:
        missing.append("inr")
    elif inr.value > T.INR_MAX.value:
        out.append(
            Caution(
                "inr_above_1_5",
                f"INR {inr.value:g}: correct to ≤ {T.INR_MAX.value:g} first",
                T.INR_MAX.source,
                (inr.ref,),
            )
        )
    if platelets is None:
        missing.append("platelets")
    elif platelets.value < T.PLATELETS_MIN.value:
        out.append(
            Caution(
                "platelets_below_50",
                f"Platelets {platelets.value:g} × 10^9/L: correct to ≥ {T.PLATELETS_MIN.value:g} first",
                T.PLATELETS_MIN.source,
                (platelets.ref,),
            )
        )
    for concept, id_, text, source in (
        (
            "anticoagulant",
            "anticoagulant_active",
            "Active anticoagulant/antiplatelet: plan a peri-procedural hold",
            "SIR-2019",
        ),
        ("bleeding-disorder", "bleeding_disorder", "Bleeding disorder documented", "SIR-2019"),
        ("cement-allergy", "cement_allergy", "Allergy to PMMA / bone cement", "ACR-AC"),
        ("contrast-allergy", "contrast_allergy", "Allergy to iodinated contrast", "ACR-AC"),
    ):
        if f.refs(concept):
            out.append(Caution(id_, text, source, f.refs(concept)))
    levels = _level_count(f)
    if levels > T.MAX_LEVELS.value:
        out.append(
            Caution(
                "more_than_3_levels",
                f"{levels} fractured levels",
                T.MAX_LEVELS.source,
                tuple(x.ref for x in f.fractures),
            )
        )
    h = s.height_loss
    if h is not None and h.value is not None and h.value > T.VERTEBRA_PLANA.value:
        out.append(
            Caution("vertebra_plana", f"Height loss {h.value:g} % (vertebra plana)", T.VERTEBRA_PLANA.source, (h.ref,))
        )
    return out, missing


def _level_count(f: Facts) -> int:
    return count_levels(f.fractures)


def _procedure(s: Situation) -> str:
    h = s.height_loss
    if (h is not None and h.value is not None and h.value > T.KYPHOPLASTY_HEIGHT_LOSS.value) or s.kyphosis:
        return "kyphoplasty"
    return "either"


# urgent referral first (rows 1–3); in pregnancy DXA and osteoporosis drugs wait until after it (row 5)
NO_SECONDARY_PREVENTION = frozenset({1, 2, 3, 5})


def _secondary_prevention(s: Situation, row: int) -> SecondaryPrevention | None:
    if s.pathway != "osteoporotic" or row in NO_SECONDARY_PREVENTION:
        return None
    f = s.facts
    dxa = _latest(f.readings.get("dxa-tscore", ()), f.now, T.DXA_MAX_AGE.value)
    therapy = f.refs("osteoporosis-therapy")
    if dxa and therapy:
        return None
    criteria = (
        Criterion(
            "dxa_within_2_years",
            "Bone density (DXA T-score) within 2 years",
            _status(dxa is not None),
            T.DXA_MAX_AGE.source,
            "dxa",
            (dxa.ref,) if dxa else (),
            f"T-score {dxa.value:g}" if dxa else "",
        ),
        Criterion(
            "osteoporosis_therapy",
            "Current osteoporosis therapy",
            _status(bool(therapy)),
            "IOF-2011",
            "osteoporosis_therapy",
            therapy,
        ),
    )
    return SecondaryPrevention("info" if therapy else "warning", criteria)


def _history_of_malignancy(f: Facts) -> list[Caution]:
    """A past cancer (Z85.-, or a cancer Condition inactive, resolved or in remission): no referral,
    but before augmentation a pathologic fracture is to be excluded (ACR-AC)."""
    refs = f.refs("cancer-history")
    if not refs:
        return []
    text = "History of malignancy: exclude a pathologic fracture by MRI; biopsy at augmentation"
    return [Caution("history_of_malignancy", text, "ACR-AC", refs)]


def decide(facts: Facts) -> Assessment | None:
    """The recommendation for one patient, or ``None`` when no active VCF is documented (row 0)."""
    if not facts.fractures:
        return None
    s = situate(facts)
    row = next(r for r in ROWS if r.when(s))
    criteria = _criteria(s)
    cautions, unknown_labs = _cautions(s)
    missing = [c.fact for c in criteria if c.status == "unknown"]
    notes: list[str] = []
    augmentation = row.recommendation == "augmentation"
    if augmentation:
        cautions += _history_of_malignancy(facts)
        missing += unknown_labs + sorted(k for k in facts.unavailable if k != "encounters")
        if s.fracture_age_days is not None and s.fracture_age_days > T.LCD_ACUTE.value:
            notes.append(
                "The fracture is older than 12 weeks: Medicare LCDs cover acute/subacute fractures "
                "only; the decision is the specialist's."
            )
    if s.onset_estimated:
        notes.append("Fracture onset is estimated (from the date recorded or a partial date).")
    if s.future_onset:
        notes.append("A fracture onset date lies in the future; it was ignored (onset unknown).")
    return Assessment(
        row=row.number,
        headline=row.headline,
        recommendation=row.recommendation,
        referral=row.referral,
        indicator=row.indicator(s),
        pathway=s.pathway,
        procedure=_procedure(s) if augmentation else None,
        criteria=tuple(criteria),
        cautions=tuple(cautions),
        missing=tuple(dict.fromkeys(missing)),
        notes=tuple(notes),
        fracture_refs=tuple(x.ref for x in facts.fractures),
        fracture_age_days=s.fracture_age_days,
        pain=s.pain.value if s.pain else None,
        secondary_prevention=_secondary_prevention(s, row.number),
    )
