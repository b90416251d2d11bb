"""Demo documents: about 150 controlled documents across types and departments, in every lifecycle state, with
signatures. Loaded by `flask demo load` (idempotent: existing numbers are skipped).

The demo loader signs on behalf of the demo people without a signing ceremony (nobody is at the keyboard); its audit
transactions are attributed to the command-line system action that loaded them, so the trail stays truthful.
"""

from __future__ import annotations

import random
from datetime import timedelta

import click
import sqlalchemy as sa

from core.auth.models import User, UserRole
from core.clock import now_utc
from core.db import db, transaction
from core.org import Department, JobFunction
from qms.documents import services
from qms.documents.models import Document
from signatures.services import SignerProof

TOPICS = {
    "QA": ["Document control", "Change control", "Deviation management", "CAPA management", "Internal audits",
           "Supplier qualification", "Batch record review", "Product release", "Complaint handling",
           "Training management", "Data integrity", "Annual product review"],
    "QC": ["Sampling of raw materials", "HPLC system suitability", "Out-of-specification results",
           "Environmental monitoring", "Water system testing", "Reference standards", "Stability programme",
           "Laboratory notebooks", "Microbial limits testing", "Instrument calibration in the laboratory"],
    "PRD": ["Line clearance", "Cleaning of filling line", "Gowning for grade B areas", "Dispensing of materials",
            "Visual inspection of vials", "Packaging line start-up", "Weighing and checking", "In-process controls",
            "Handling of rejected material", "Aseptic filling interventions"],
    "ENG": ["Preventive maintenance", "Calibration of instruments", "HVAC alarm response",
            "Computerised system validation", "Equipment qualification", "Spare parts management",
            "Compressed air monitoring", "Backup and restore of plant systems"],
}
TYPES = ["SOP", "SOP", "SOP", "WI", "WI", "FORM", "POL", "SPEC"]


def _content(title: str, number: str, revision: str) -> str:
    return f"""# {title}

## 1 Purpose
This procedure describes how {title.lower()} is performed at the site, so that it is done the same way every time
and meets GMP requirements.

## 2 Scope
Applies to all personnel involved in {title.lower()}. Document {number}, revision {revision}.

## 3 Responsibilities
| Role | Responsibility |
|---|---|
| Operator | Performs the steps and records the results |
| Supervisor | Checks the records and releases the step |
| QA | Approves deviations from this procedure |

## 4 Procedure
1. Check that the area and equipment are clean and labelled.
2. Verify that you are trained on the current revision of this procedure.
3. Perform the steps in the order given and record each result immediately.
4. Report any deviation to your supervisor before continuing.

## 5 References
- EU GMP Part I, Chapter 4: Documentation
- 21 CFR Part 211
"""


def _people(role: str) -> list[User]:
    return list(db.session.scalars(
        sa.select(User).join(UserRole).where(UserRole.role == role, User.active.is_(True)).order_by(User.id)))


def _proof(user: User) -> SignerProof:
    return SignerProof(user.id, "demo-data", now_utc())


def _sign_through(rev, author, reviewer, approver, *, effective_on=None):
    services.set_routing(rev, actor=author, reviewer_ids=[reviewer.id], approver_ids=[approver.id])
    services.submit_for_review(rev, actor=author, proof=_proof(author), expected_row_version=rev.row_version)
    services.review(rev, actor=reviewer, proof=_proof(reviewer), expected_row_version=rev.row_version,
                    comment="Checked against the current practice on the floor.")
    services.approve(rev, actor=approver, proof=_proof(approver), expected_row_version=rev.row_version,
                     effective_on=effective_on)


def load(documents: int = 150, **_other) -> None:
    n_documents = documents
    rng = random.Random(4711)
    today = now_utc().date()
    with transaction():
        authors = _people("document_author")
        reviewers = _people("supervisor")
        approvers = _people("qa_approver")
        if not (authors and reviewers and approvers):
            click.echo("demo documents skipped: no authors, reviewers or approvers")
            return
        existing = set(db.session.scalars(sa.select(Document.number)))
        departments = list(db.session.scalars(sa.select(Department).order_by(Department.id)))
        functions = list(db.session.scalars(sa.select(JobFunction).order_by(JobFunction.id)))
        plan = []
        counters: dict[tuple[str, str], int] = {}
        for i in range(n_documents):
            dept = departments[(i + i // len(TYPES)) % len(departments)]
            topic_list = TOPICS.get(dept.code, TOPICS["QA"])
            doc_type = TYPES[i % len(TYPES)]
            key = (doc_type, dept.code)
            counters[key] = counters.get(key, 0) + 1
            number = f"{doc_type}-{dept.code}-{counters[key]:03d}"
            n = counters[key] - 1
            title = topic_list[n % len(topic_list)]
            if n >= len(topic_list):
                title = f"{title}, {dept.site.code} area {n // len(topic_list) + 1}"
            if doc_type == "FORM":
                title = f"{title} record form"
            elif doc_type == "SPEC":
                title = f"{title} specification"
            plan.append((i, number, title, dept, doc_type))
        created = 0
        with click.progressbar(plan, label="Demo documents", file=None) as bar:
            for i, number, title, dept, doc_type in bar:
                if number in existing:
                    continue
                author = authors[i % len(authors)]
                reviewer = reviewers[i % len(reviewers)]
                approver = approvers[i % len(approvers)]
                audience = [f.id for f in rng.sample(functions, k=min(3, len(functions)))] if functions else []
                operators = [f.id for f in functions if f.code == "PRD-OPR"]
                if i % 4 == 0 and operators and operators[0] not in audience:
                    audience.append(operators[0])  # production operators train on a good share of documents
                doc = services.create_document(number=number, title=title, doc_type=doc_type,
                                               department_id=dept.id, owner_id=author.id,
                                               review_interval_months=rng.choice([12, 24, 36]),
                                               training_window_days=rng.choice([7, 14, 21]),
                                               audience_job_function_ids=audience, actor=author)
                state = i % 20
                rev = services.start_revision(doc, author=author, major=state != 0,
                                              change_summary="First issue", reason="New procedure",
                                              content_markdown=_content(title, number, "1.0"))
                if state == 0:
                    pass  # a first draft
                elif state == 1:
                    services.set_routing(rev, actor=author, reviewer_ids=[reviewer.id], approver_ids=[approver.id])
                    services.submit_for_review(rev, actor=author, proof=_proof(author),
                                               expected_row_version=rev.row_version)
                elif state == 2:
                    _sign_through(rev, author, reviewer, approver, effective_on=today + timedelta(days=14))
                elif state == 5:
                    services.set_routing(rev, actor=author, reviewer_ids=[reviewer.id], approver_ids=[approver.id])
                    services.submit_for_review(rev, actor=author, proof=_proof(author),
                                               expected_row_version=rev.row_version)
                    services.reject(rev, actor=reviewer, proof=_proof(reviewer),
                                    expected_row_version=rev.row_version,
                                    comment="Step 3 does not match the current line layout; please update.")
                else:
                    _sign_through(rev, author, reviewer, approver, effective_on=today)
                    services.release_due(today)
                    if state == 3:
                        services.make_obsolete(rev, actor=approver, proof=_proof(approver),
                                               expected_row_version=rev.row_version,
                                               reason="Process transferred to another site.")
                    elif state == 4:
                        services.start_revision(doc, author=author, major=False, change_summary="Clarified step 2",
                                                reason="Operator feedback",
                                                content_markdown=_content(title, number, "1.1"))
                    elif state in (6, 7, 8):
                        second = services.start_revision(
                            doc, author=author, major=True, change_summary="Updated for the new equipment",
                            reason="Change control CC-2026-00" + str(10 + i),
                            content_markdown=_content(title, number, "2.0").replace(
                                "4. Report any deviation", "4. Record the equipment ID.\n5. Report any deviation"))
                        _sign_through(second, author, reviewer, approver, effective_on=today)
                        services.release_due(today)
                created += 1
    click.echo(f"demo documents ready: {created} documents created")
