"""Electronic signatures: signing ceremony, signature records, manifestation (built in later issues)."""
