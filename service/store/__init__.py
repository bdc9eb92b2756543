"""The database: tables and migrations, SQLite durability, audit rows, feedback storage and report.

In: rows built by the HTTP half (an audit record, feedback items) and the database URL. Out: committed
rows (durable before the caller answers), the feedback report. Errors: ``ServiceUnavailableError``
(503) when the database cannot take a write; SQLAlchemy errors otherwise propagate.
"""
