"""Stage 4: FHIR R4 resources → clinical ``Facts``, through the value sets of ``mappings/``.

In: the gathered resources (and, for order hooks, the draft orders), ``now`` and the terminology.
The resources the decision reads are validated as FHIR R4 (``validation``); codes are matched on
``(system, code)`` (``terminology``); dates are read by ``fhirtime``.

Out: ``service.decide.facts.Facts``, and the augmentation orders among the drafts. No I/O, no clock.
Errors: ``InvalidResourceError`` (400) for a resource the decision needs that is not valid FHIR.
"""
