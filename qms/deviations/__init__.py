"""Deviations: what went wrong, the investigation, and the training adequacy of the people involved."""
