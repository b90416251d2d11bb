"""Test support shipped with Attest: the pytest plugin (fixtures) and the two-database suite runner."""
