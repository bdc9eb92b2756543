"""Alembic environment: migrations run on the connection ``service.store.db.migrate`` hands over.

A new revision, after changing the tables in ``service/store/db.py``: from ``service/store/migrations`` run
``alembic -x url=sqlite:///scratch.sqlite3 upgrade head`` then ``alembic -x url=sqlite:///scratch.sqlite3
revision --autogenerate --rev-id 0002 -m "what changed"``, review the file (plain SQLAlchemy types
only), delete scratch.sqlite3. The app applies it on its next start; ``tests/test_db.py`` fails
while the tables and the migrations disagree.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from service.store.db import metadata

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
