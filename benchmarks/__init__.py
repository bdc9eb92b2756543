"""Benchmarks: vcf-cds against the orjson floor and against naive full FHIR validation."""
