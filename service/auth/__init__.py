"""Stage 2: who is calling. The EHR's signed JWT on every ``/cds-services`` call.

In: the bearer token, the audience (this service's URL), ``now``, the trusted issuers and a replay
store; for issuers published by URL, their JWK Sets (``jwks``, the only I/O of this stage).

Out: a verified token (issuer, tenant, ``jti``). Errors: ``AuthenticationError`` (401) for a token
refused, ``IssuerConfigError`` for a trusted-issuer file the server cannot start with.
"""
