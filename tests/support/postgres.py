"""The throwaway PostgreSQL of ``bash scripts/with-postgres`` (``scripts/test`` starts one): its URL,
or "" when none runs and the PostgreSQL variants skip."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url

from service.store.db import create_db_engine

POSTGRES_URL = os.environ.get("VCF_CDS_TEST_POSTGRES_URL", "")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL to a new, empty schema of the test PostgreSQL (its search_path), dropped on exit."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
