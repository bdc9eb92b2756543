"""Pure decision rules over ``Facts``: no I/O, no clock, no Flask. See ``rules.decide``."""

from .rules import RULES_VERSION, Assessment, Caution, Criterion, SecondaryPrevention, decide

__all__ = ["RULES_VERSION", "Assessment", "Caution", "Criterion", "SecondaryPrevention", "decide"]
