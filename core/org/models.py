"""Organisation structure: sites, departments and job functions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Versioned, db, table_args


class Site(Versioned, db.Model):
    __tablename__ = "core_site"
    __table_args__ = table_args()
    __audit_label__ = "Site"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, info={"label": "Code"})
    name: Mapped[str] = mapped_column(sa.String(200), info={"label": "Name"})
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", info={"label": "Time zone"})

    def audit_title(self) -> str:
        return f"Site {self.code}"


class Department(Versioned, db.Model):
    __tablename__ = "core_department"
    __table_args__ = table_args(sa.UniqueConstraint("site_id", "code"))
    __audit_label__ = "Department"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("core_site.id"), index=True, info={"label": "Site"})
    code: Mapped[str] = mapped_column(sa.String(32), info={"label": "Code"})
    name: Mapped[str] = mapped_column(sa.String(200), info={"label": "Name"})

    site: Mapped[Site] = relationship()

    def audit_title(self) -> str:
        return f"Department {self.code}"


class JobFunction(Versioned, db.Model):
    __tablename__ = "core_job_function"
    __table_args__ = table_args()
    __audit_label__ = "Job function"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, info={"label": "Code"})
    name: Mapped[str] = mapped_column(sa.String(200), info={"label": "Name"})
    department_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("core_department.id"), index=True, info={"label": "Department"}
    )
    active: Mapped[bool] = mapped_column(default=True, info={"label": "Active"})

    department: Mapped[Department | None] = relationship()

    def audit_title(self) -> str:
        return f"Job function {self.code}"
