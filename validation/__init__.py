"""Validation: URS, IQ/OQ/PQ protocol runner, executed runs, traceability (built in later issues)."""
