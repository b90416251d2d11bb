"""Organisation structure: sites, departments and job functions (models); the use cases (services) and pages (views)
of sites and departments. Job functions' use cases and pages are training's (training.job_functions): who holds them
and what they require is training's."""

from core.org.models import Department, JobFunction, Site

__all__ = ["Department", "JobFunction", "Site"]
