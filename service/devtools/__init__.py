"""For people working on the rules: ``vcf-cds replay``, the card viewer at ``/``, golden fixtures.

In: fixture files (a hook request plus its expected assessment). Out: the cards through the real
app, their comparison with what was expected (``expect``), console output (``console``), and dates
shifted to today (``timeshift``). Not on the path of a hook call.
"""
