"""Every number the rules use, with the source id of CLINICAL.md that it comes from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    value: float
    unit: str
    source: str
    why: str


PAIN_MIN = Threshold(5, "NRS", "LCD-L38201", "NRS ≥ 5 despite optimal non-surgical management")
PAIN_HOSPITALISED = Threshold(8, "NRS", "LCD-L38201", "hospitalised with NRS ≥ 8")
PAIN_SEVERE = Threshold(7, "NRS", "TRIALS", "VAPOUR: fracture < 6 weeks with NRS ≥ 7 benefited")
PAIN_MAX_AGE = Threshold(30, "days", "LCD-L38201", "pain must be current: a score within 30 days")
WORSENING_RISE = Threshold(1, "NRS", "LCD-L38201", "worsening pain: a rise of ≥ 1 point")
WORSENING_GAP = Threshold(7, "days", "LCD-L38201", "between readings ≥ 7 days apart")
CONSERVATIVE_TRIAL = Threshold(21, "days", "FAQ-SEED", "a 3-week trial of conservative care first")
SUBACUTE = Threshold(42, "days", "PARMAR-2019", "3–6 weeks is ≤ 42 days: the seed's > 6 weeks starts at day 43")
CHRONIC = Threshold(364, "days", "PARMAR-2019", "a fracture over 52 weeks old has healed (chronic)")
LCD_ACUTE = Threshold(84, "days", "LCD-L38201", "LCDs cover acute/subacute fractures (≤ 12 weeks)")
INR_MAX = Threshold(1.5, "INR", "SIR-2019", "INR ≤ 1.5 for high-bleeding-risk procedures")
PLATELETS_MIN = Threshold(50, "10^9/L", "SIR-2019", "platelets ≥ 50 × 10^9/L")
LAB_MAX_AGE = Threshold(30, "days", "SIR-2019", "pre-procedure labs within 30 days")
MAX_LEVELS = Threshold(3, "levels", "ACR-AC", "more than 3 fractured levels")
VERTEBRA_PLANA = Threshold(200 / 3, "%", "ACR-AC", "collapse of more than 2/3 of body height")
KYPHOPLASTY_HEIGHT_LOSS = Threshold(25, "%", "CLINIC-SEED", "> 25 % height loss: balloon to regain height")
SINS_SURGICAL = Threshold(7, "SINS", "NASS-AUC", "SINS ≥ 7: surgical consultation")
SINS_UNSTABLE = Threshold(13, "SINS", "NASS-AUC", "SINS ≥ 13: unstable")
OSTEOPOROTIC_AGE = Threshold(50, "years", "IOF-2011", "a low-trauma vertebral fracture at ≥ 50 is a fragility fracture")
PREGNANCY_TEST_MAX_AGE = Threshold(280, "days", "ACR-AC", "a positive hCG counts for the length of a pregnancy")
DXA_MAX_AGE = Threshold(730, "days", "IOF-2011", "bone density measured within 2 years")
