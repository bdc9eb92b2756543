"""What the tests share: request and record builders, signed tokens, a served app, the hostile
corpus, hypothesis strategies, the CDS Hooks response rules, and the fixed clock, paths and app
settings every test uses. Fixtures (``app``, ``client``, ``db_app``…) stay in ``tests/conftest.py``.
"""
