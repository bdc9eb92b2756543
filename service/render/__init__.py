"""Stage 6: an ``Assessment`` → CDS Hooks 2.0 cards (Markdown detail, FHIR R4 suggestions).

In: the assessment, the service, the request context and ``new_uuid``. Out: the list of card dicts
(recommendation cards; for order hooks, the order-check card). Pure: no I/O, no clock; raises nothing
for any assessment ``decide`` can make.
"""
