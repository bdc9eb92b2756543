"""Stage 3: the patient's record. Prefetch first (CDS Hooks 2.0), else the EHR's FHIR server.

In: the validated hook request and its service's prefetch templates; a ``Fetcher`` (the FHIR client,
``fhirclient``, the only module of this stage that imports ``requests``) for what was not prefetched.

Out: the FHIR resources per prefetch key, and which keys were fetched. Errors: ``BadRequestError``
for a malformed prefetch, ``PrefetchUnavailableError`` (412) when required data cannot be fetched.
"""
