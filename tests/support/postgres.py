"""The throwaway PostgreSQL of ``bash scripts/with-postgres`` (``scripts/test`` starts one): its URL,
or "" when none runs and the PostgreSQL variants skip."""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get("VCF_CDS_TEST_POSTGRES_URL", "")
