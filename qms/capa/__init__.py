"""Corrective and preventive actions (CAPA)."""
