"""Organisation structure: sites, departments and job functions (models), their use cases (services) and pages
(views)."""

from core.org.models import Department, JobFunction, Site

__all__ = ["Department", "JobFunction", "Site"]
