"""Stage 5: pure decision rules over ``Facts``: no I/O, no clock, no Flask. See ``rules.decide``.

In: ``facts.Facts`` (which carries ``now``). Out: an ``Assessment`` (recommendation, criteria, cautions,
secondary prevention). Each threshold with its source is in ``thresholds``. Raises nothing for any
``Facts``; a test walks the imports and fails if this package reaches Flask, requests or the FHIR
client (tests/test_purity.py).
"""

from .rules import RULES_VERSION, Assessment, Caution, Criterion, SecondaryPrevention, decide

__all__ = ["RULES_VERSION", "Assessment", "Caution", "Criterion", "SecondaryPrevention", "decide"]
