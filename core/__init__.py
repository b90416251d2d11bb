"""Shared kernel of Attest: database, audit trail, identity and access, organisation, clock.

`core` imports no domain package (qms, training, lms, signatures, validation); tests/unit/test_layering.py enforces it.
"""
