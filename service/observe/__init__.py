"""What the service says about itself: JSON log lines, Prometheus metrics, and redaction.

In: events from the other stages (types, statuses, service ids, counts). Out: log lines and metric
samples with no PHI (``redact`` decides what of a request may be repeated). Raises nothing.
"""
