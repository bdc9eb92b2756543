"""Alembic environment: migrations run on the connection ``service.db.migrate`` hands over.

Make a new revision with ``alembic -x url=sqlite:///scratch.sqlite3 revision --autogenerate -m "…"``
from ``service/migrations`` (see README there); the app applies it on its next start.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service.db import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # the alembic command line (writing a new revision)
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///scratch.sqlite3")
    with create_engine(url).connect() as own:
        context.configure(connection=own, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        own.commit()
