"""Training management: matrix, assignment engine, read-and-sign, qualification (built in later issues)."""
