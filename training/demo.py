"""Demo training data: every demo person who trains in Attest (whose roles let them read and sign their own training)
holds a job function of their department (loaded before the documents, so approving the demo documents assigns their
training). Administrators and read-only auditors, who cannot complete training, hold none."""

from __future__ import annotations

from datetime import timedelta

import click
import sqlalchemy as sa

from core import bulk
from core.auth.models import User
from core.clock import now_utc
from core.db import db, transaction
from core.org import Department, JobFunction
from training.models import UserJobFunction

# department code -> job function codes its people hold (the demo organisation's functions, see core.demo)
BY_DEPARTMENT = {"PRD": ["PRD-OPR", "PRD-ASEP", "PRD-PKG"], "QC": ["QC-ANA", "QC-MIC"], "QA": ["QA-SPEC"],
                 "ENG": ["ENG-MNT", "ENG-CAL"]}


def load(**_options) -> None:
    with transaction():
        functions = {jf.code: jf.id for jf in db.session.scalars(sa.select(JobFunction))}
        holders = set(db.session.scalars(sa.select(UserJobFunction.user_id)))
        start = now_utc().date() - timedelta(days=365)
        rows = []
        users = db.session.execute(sa.select(User, Department.code).join(Department,
                                                                         Department.id == User.department_id)
                                   .where(User.active.is_(True)).order_by(User.id)).all()
        for n, (user, dept_code) in enumerate(users):
            codes = BY_DEPARTMENT.get(dept_code, [])
            user_id = user.id
            if user_id in holders or not codes or not user.can("training.view_own"):
                continue
            code = codes[n % len(codes)]
            if code in functions:
                rows.append({"user_id": user_id, "job_function_id": functions[code], "valid_from": start})
        bulk.bulk_insert(UserJobFunction, rows)
    click.echo(f"demo job functions ready: {len(rows)} people given a job function")
