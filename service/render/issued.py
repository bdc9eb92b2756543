"""What the rendered cards were, in the words of the audit log and the metrics: uuid, kind, recommendation.

Read back from the cards' own extension, here beside the code that writes it, so that no other
stage needs to know how a card carries its kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cards import EXTENSION_KEY


@dataclass
class IssuedCard:
    uuid: str
    kind: str
    recommendation: str | None


def issued_cards(cards: list[dict[str, Any]]) -> list[IssuedCard]:
    issued = []
    for card in cards:
        ext = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
        issued.append(IssuedCard(card["uuid"], str(ext.get("kind", "other")), ext.get("recommendation")))
    return issued
