"""Quality management: document control, change control, CAPA and deviations (built in later issues)."""
