"""Demo quality events, loaded last by `flask demo load` (skipped when any change control, deviation or CAPA exists):

- change controls in every state: draft, submitted, rejected and reworked, approved with tasks (one overdue), in
  implementation with its draft revision started, in verification with training under way, closed after everyone
  trained, closed by QA with open training, cancelled;
- deviations in every state, with the people involved and the SOPs concerned (their training adequacy panel is
  computed from the history): open, overdue, under investigation, pending QA approval with its CAPA, closed, closed
  with a closed CAPA, cancelled as a duplicate;
- CAPAs in every state, from deviations, a change control, an audit finding and a complaint: draft, open with a
  retraining action (training partly done) and an overdue corrective action, in effectiveness check, closed, cancelled.

Everything goes through the services with demo signatures (auth method `demo-data`), attributed to the demo people:
the change owner `carla.change` (supervisor and document author, created here), the supervisor `supervisor`, QA
`qa.approver` and a second QA approver.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import click
import sqlalchemy as sa
import sqlalchemy.orm

from core.auth import passwords
from core.auth import services as auth_services
from core.auth.models import User, UserRole
from core.clock import now_utc
from core.db import db, default_reason, transaction
from core.org import Department, JobFunction
from qms.capa import services as capa
from qms.capa.models import CORRECTIVE, PREVENTIVE, Capa
from qms.change_control import services as cc
from qms.change_control.models import ChangeControl
from qms.deviations import services as dev
from qms.deviations.models import Deviation
from qms.documents import publish
from qms.documents import services as docs
from qms.documents.models import EFFECTIVE, OBSOLETE, SUPERSEDED, Document, Revision
from signatures.services import SignerProof
from training.models import (
    OPEN,
    TARGET_JOB_FUNCTION,
    TrainingAssignment,
    TrainingRequirement,
    TrainingSubject,
    UserJobFunction,
)
from training.read_and_sign import services as rs

CHANGE_OWNER = ("carla.change", "Carla Change", {"supervisor", "document_author"})


@dataclass
class Cast:
    qa: User
    qa2: User
    supervisor: User
    owner: User  # change owner: supervisor and document author
    reviewer: User  # a second supervisor, reviews the change's revisions
    operators: list[User]


def _proof(user: User) -> SignerProof:
    return SignerProof(user.id, "demo-data", now_utc())


def _by_role(role: str) -> list[User]:
    return list(db.session.scalars(sa.select(User).join(UserRole).where(
        UserRole.role == role, User.active.is_(True)).order_by(User.id)))


def _cast() -> Cast | None:
    qas = _by_role("qa_approver")
    supervisors = [u for u in _by_role("supervisor") if u.username != CHANGE_OWNER[0]]
    operators = [u for u in _by_role("operator") if u.department is not None and u.department.code == "PRD"]
    if len(qas) < 2 or len(supervisors) < 2 or len(operators) < 6:
        return None
    named = {u.username: u for u in qas + supervisors}
    qa = named.get("qa.approver", qas[0])
    supervisor = named.get("supervisor", supervisors[0])
    owner = db.session.scalar(sa.select(User).where(User.username == CHANGE_OWNER[0]))
    if owner is None:
        department = db.session.scalar(sa.select(Department).where(Department.code == "QA").order_by(Department.id))
        owner, _ = auth_services.create_user(
            username=CHANGE_OWNER[0], full_name=CHANGE_OWNER[1], email=f"{CHANGE_OWNER[0]}@demo.attest.example",
            roles=CHANGE_OWNER[2], site_id=department.site_id if department else None,
            department_id=department.id if department else None,
            password_hash=passwords.hash_password(_demo_password()), must_change_password=False)
    return Cast(qa=qa, qa2=next(u for u in qas if u.id != qa.id), supervisor=supervisor, owner=owner,
                reviewer=next(u for u in supervisors if u.id != supervisor.id), operators=operators)


def _demo_password() -> str:
    from core.demo import DEMO_PASSWORD

    return DEMO_PASSWORD


def _reload(cast: Cast) -> Cast:
    """The same people in the current session (each step runs in its own unit of work)."""
    get = db.session.get
    return Cast(qa=get(User, cast.qa.id), qa2=get(User, cast.qa2.id), supervisor=get(User, cast.supervisor.id),
                owner=get(User, cast.owner.id), reviewer=get(User, cast.reviewer.id),
                operators=[get(User, u.id) for u in cast.operators])


def _step(cast: Cast, work: Callable[[Cast], object]) -> object:
    with transaction():
        return work(_reload(cast))


def _effective_documents(k: int, *, small_audience: bool = False) -> list[Document]:
    """Effective documents with no revision under way (a change can start their next draft)."""
    other = sa.orm.aliased(Revision)
    open_revision = sa.exists().where(other.document_id == Document.id, other.status.not_in(
        [EFFECTIVE, SUPERSEDED, OBSOLETE]))
    stmt = (sa.select(Document).join(Revision, Revision.document_id == Document.id)
            .where(Revision.status == EFFECTIVE, ~open_revision).order_by(Document.number))
    found = list(db.session.scalars(stmt))
    if small_audience:  # fewest people required to train (at least 3) first: quick to train them all again
        sizes = dict(db.session.execute(
            sa.select(TrainingSubject.key, sa.func.count(sa.distinct(UserJobFunction.user_id)))
            .join(TrainingRequirement, TrainingRequirement.subject_id == TrainingSubject.id)
            .join(UserJobFunction, sa.and_(TrainingRequirement.target_type == TARGET_JOB_FUNCTION,
                                           UserJobFunction.job_function_id == TrainingRequirement.target_id))
            .where(UserJobFunction.valid_to.is_(None)).group_by(TrainingSubject.key)).all())
        found = sorted((d for d in found if sizes.get(d.number, 0) >= 3), key=lambda d: (sizes[d.number], d.number))
    return found[:k]


def _sign_revision(revision: Revision, cast: Cast, effective_on) -> None:
    author = revision.author
    docs.set_routing(revision, actor=author, reviewer_ids=[cast.reviewer.id], approver_ids=[cast.qa2.id])
    docs.submit_for_review(revision, actor=author, proof=_proof(author), expected_row_version=revision.row_version)
    docs.review(revision, actor=cast.reviewer, proof=_proof(cast.reviewer), expected_row_version=revision.row_version,
                comment="Matches the change control.")
    docs.approve(revision, actor=cast.qa2, proof=_proof(cast.qa2), expected_row_version=revision.row_version,
                 effective_on=effective_on)


def _train_all(revision_id: int, *, leave: int = 0) -> int:
    """Everyone with open training on the revision signs "Read and understood", except the last `leave` people."""
    item = publish.item_of(db.session.get(Revision, revision_id))
    rows = db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.item_id == item.id, TrainingAssignment.status == OPEN)
        .order_by(TrainingAssignment.user_id)).all()
    rows = [a for a in rows if db.session.get(User, a.user_id).can("training.view_own")]  # who can read and sign
    rows = rows[:len(rows) - leave] if leave else rows
    for assignment in rows:
        user = db.session.get(User, assignment.user_id)
        rs.mark_opened(assignment, user)
        rs.complete(assignment, user=user, proof=_proof(user), expected_version=None)
    return len(rows)


# --- change controls -------------------------------------------------------------------------------------------------


def _change(c: Cast, title: str, *, documents=(), functions=(), **overrides) -> ChangeControl:
    fields = {"description": f"{title}. The affected procedures are revised and the people concerned retrained.",
              "justification": "Outcome of the annual process review; current practice differs from the SOP.",
              "change_type": "document", "risk_level": "medium",
              "risk_rationale": "Procedure wording only; no impact on product quality or validated state.",
              **overrides}
    return cc.create_change(actor=c.owner, title=title, owner_id=c.owner.id, document_ids=[d.id for d in documents],
                            job_function_ids=list(functions), **fields)


def _submit(change: ChangeControl, c: Cast) -> None:
    cc.submit(change, actor=c.owner, proof=_proof(c.owner), expected_row_version=change.row_version)


def _approve(change: ChangeControl, c: Cast) -> None:
    cc.approve(change, actor=c.qa, proof=_proof(c.qa), expected_row_version=change.row_version,
               comment="Risk assessment agreed.")


def _changes(cast: Cast, today) -> list[str]:
    numbers: list[str] = []

    def keep(change: ChangeControl) -> ChangeControl:
        numbers.append(change.number)
        return change

    functions = list(db.session.scalars(sa.select(JobFunction.id).where(JobFunction.code == "PRD-OPR")))
    _step(cast, lambda c: keep(_change(c, "Add torque values to the capping machine set-up", change_type="equipment",
                                       risk_level="low", risk_rationale="Set-up values only; verified at start-up.")))

    def submitted(c: Cast):
        change = keep(_change(c, "Introduce a second-person check of line clearance", change_type="process",
                              functions=functions))
        _submit(change, c)

    _step(cast, submitted)

    def reworked(c: Cast):
        change = keep(_change(c, "Replace paper cleaning logs by the electronic logbook", change_type="system",
                              risk_level="high", risk_rationale="Computerised system: data integrity impact."))
        _submit(change, c)
        cc.reject(change, actor=c.qa, proof=_proof(c.qa), expected_row_version=change.row_version,
                  comment="Add the validation plan for the logbook and the data migration to the risk rationale.")

    _step(cast, reworked)

    def approved(c: Cast):
        change = keep(_change(c, "Relocate the weighing booth to room B-104", change_type="equipment",
                              risk_level="high", risk_rationale="Qualified equipment moves: requalification."))
        _submit(change, c)
        _approve(change, c)
        cc.add_task(change, actor=c.owner, title="Requalify the weighing booth (IQ/OQ) in B-104",
                    owner_id=c.supervisor.id, due_on=today - timedelta(days=5))  # overdue
        cc.add_task(change, actor=c.owner, title="Update the room layout drawings", owner_id=c.owner.id,
                    due_on=today + timedelta(days=20))

    _step(cast, approved)

    targets = _effective_documents(4)
    small = [d for d in _effective_documents(40, small_audience=True) if d not in targets][:2]
    if len(targets) < 2 or len(small) < 2:
        return numbers
    changes: dict[str, int] = {}

    def implementing(c: Cast):
        change = keep(_change(c, f"Clarify the sampling points in {targets[0].number}", documents=[targets[0]]))
        _submit(change, c)
        _approve(change, c)
        cc.add_task(change, actor=c.owner, title="Brief the shift leads", owner_id=c.supervisor.id,
                    due_on=today + timedelta(days=10))
        cc.start_implementation(change, actor=c.owner, expected_row_version=change.row_version)

    _step(cast, implementing)

    def to_verification(key: str, document: Document, title: str):
        def begin(c: Cast):
            change = keep(_change(c, title, documents=[document]))
            _submit(change, c)
            _approve(change, c)
            cc.start_implementation(change, actor=c.owner, expected_row_version=change.row_version)
            revision = db.session.get(Revision, change.documents[0].revision_id)
            revision.content_markdown = (revision.content_markdown or "") + f"\n\nRevised under {change.number}.\n"
            db.session.flush()
            _sign_revision(revision, c, today)
            changes[key] = change.id

        _step(cast, begin)
        _step(cast, lambda c: docs.release_due(today))

        def verify(c: Cast):
            change = db.session.get(ChangeControl, changes[key])
            cc.to_verification(change, actor=c.owner, expected_row_version=change.row_version)

        _step(cast, verify)

    to_verification("verification", targets[1], f"Align {targets[1].number} with the new batch record")

    def part_trained(c: Cast):
        change = db.session.get(ChangeControl, changes["verification"])
        _train_all(change.documents[0].revision_id, leave=3)

    _step(cast, part_trained)

    to_verification("closed", small[0], f"Correct the hold times in {small[0].number}")
    _step(cast, lambda c: _train_all(db.session.get(ChangeControl, changes["closed"]).documents[0].revision_id))

    def close(c: Cast):
        change = db.session.get(ChangeControl, changes["closed"])
        cc.close(change, actor=c.qa, proof=_proof(c.qa), expected_row_version=change.row_version,
                 comment="Revision effective; everyone concerned has trained.")

    _step(cast, close)

    to_verification("override", small[1], f"Add the alarm response to {small[1].number}")
    _step(cast, lambda c: _train_all(db.session.get(ChangeControl, changes["override"]).documents[0].revision_id,
                                     leave=2))

    def override(c: Cast):
        change = db.session.get(ChangeControl, changes["override"])
        cc.close_with_open_training(change, actor=c.qa, proof=_proof(c.qa), expected_row_version=change.row_version,
                                    justification="Two operators are on long-term leave; they train on their return "
                                                  "before working on the line (tracked by their supervisor).")

    _step(cast, override)

    def cancelled(c: Cast):
        change = keep(_change(c, "Change the gowning sequence for grade C", change_type="process"))
        _submit(change, c)
        cc.cancel(change, actor=c.qa, proof=_proof(c.qa), expected_row_version=change.row_version,
                  reason="Superseded by the site-wide gowning project (handled in a new change control).")

    _step(cast, cancelled)
    return numbers


# --- deviations and CAPAs --------------------------------------------------------------------------------------------


def _report(c: Cast, title: str, *, days_ago: int, people: list[User], documents: list[Document], area: str,
            description: str, immediate: str | None = None) -> Deviation:
    now = now_utc()
    department = c.supervisor.department
    return dev.report_deviation(
        actor=c.supervisor, title=title, occurred_at=now - timedelta(days=days_ago, hours=3),
        discovered_at=now - timedelta(days=days_ago, hours=1), site_id=department.site_id,
        department_id=department.id, area=area, description=description, immediate_actions=immediate,
        person_ids=[u.id for u in people], document_ids=[d.id for d in documents])


def _investigate(deviation: Deviation, c: Cast, *, classification: str, root_cause: str, category: str,
                 investigation: str) -> None:
    dev.classify(deviation, actor=c.supervisor, classification=classification,
                 justification=f"{classification.capitalize()}: assessed against the deviation SOP criteria.")
    dev.start_investigation(deviation, actor=c.supervisor)
    dev.record_investigation(deviation, actor=c.supervisor, investigation=investigation, root_cause=root_cause,
                             root_cause_category=category, reason="Investigation findings")


def _capa(c: Cast, title: str, *, source_type: str, source_id=None, reference=None, owner: User | None = None,
          problem: str, root_cause: str) -> Capa:
    return capa.create_capa(actor=c.supervisor, title=title, source_type=source_type, source_id=source_id,
                            source_reference=reference, problem_statement=problem, root_cause=root_cause,
                            owner_id=(owner or c.supervisor).id)


def _action(record: Capa, c: Cast, description: str, *, due, kind=CORRECTIVE, retraining=False, documents=(),
            people=()):
    return capa.add_action(record, capa.ActionInput(kind=kind, description=description, owner_id=c.supervisor.id,
                                                    due_on=due, retraining=retraining,
                                                    document_ids=[d.id for d in documents],
                                                    user_ids=[u.id for u in people]),
                           actor=c.supervisor, expected_row_version=record.row_version)


def _quality(cast: Cast, today, change_numbers: list[str]) -> tuple[list[str], list[str]]:
    rng = random.Random(2718)
    sops = [d for d in _effective_documents(60) if d.doc_type == "SOP"] or _effective_documents(10)
    if len(sops) < 6:
        return [], []
    ops = cast.operators
    deviations: list[str] = []
    capas: list[str] = []
    ids: dict[str, int] = {}

    def note(record, key=None):
        (deviations if isinstance(record, Deviation) else capas).append(record.number)
        if key:
            ids[key] = record.id
        return record

    _step(cast, lambda c: note(_report(
        c, "Cold room CR-2 above 8 °C for 40 minutes", days_ago=1, people=[ops[0]], documents=[sops[0]],
        area="Cold room CR-2", description="The temperature monitoring system alarmed at 02:10; the door was found "
                                           "ajar after a delivery.", immediate="Door closed; stock quarantined.")))
    _step(cast, lambda c: note(_report(
        c, "Label reconciliation mismatch on line 3", days_ago=45, people=[ops[1]], documents=[sops[1]],
        area="Packaging line 3", description="12 labels unaccounted for at the end of batch P-2291.",
        immediate="Batch on hold pending reconciliation.")))

    def investigating(c: Cast):
        deviation = note(_report(c, "Balance B-07 used past its calibration date", days_ago=9,
                                 people=[ops[2], ops[3]], documents=[sops[2]], area="Weighing room W-1",
                                 description="Dispensing of batch 24-117 used balance B-07, calibration due 3 days "
                                             "earlier."))
        dev.classify(deviation, actor=c.supervisor, classification="major",
                     justification="Weights of a GMP batch may be affected; product impact to be assessed.")
        dev.start_investigation(deviation, actor=c.supervisor)
        dev.record_investigation(deviation, actor=c.supervisor, root_cause=None, root_cause_category=None,
                                 reason="First findings",
                                 investigation="Calibration records retrieved; as-found check of B-07 scheduled.")

    _step(cast, investigating)

    def pending(c: Cast):
        deviation = note(_report(
            c, "Rinse step skipped during mixer cleaning", days_ago=20, people=ops[0:4], documents=[sops[3]],
            area="Mixer M-2", description="Residue found in mixer M-2 before batch 24-120; the final rinse was not "
                                          "performed.", immediate="Mixer re-cleaned and swabbed; batch start delayed."),
            "pending")
        _investigate(deviation, c, classification="major", category="training",
                     root_cause="Two of the four operators had not trained on the current cleaning SOP revision.",
                     investigation="Interviews and training records: the rinse step was added in the current "
                                   "revision; the training adequacy panel shows who was not trained at the time.")
        record = note(_capa(c, "Retrain mixer cleaning and make the rinse step verifiable", source_type="deviation",
                            source_id=deviation.id, problem=f"{deviation.number}: rinse step skipped.",
                            root_cause=deviation.root_cause), "open")
        _action(record, c, "Add a signed rinse check box to the cleaning form", due=today)
        _action(record, c, f"Retrain the mixing operators on {sops[3].number}", kind=PREVENTIVE, retraining=True,
                documents=[sops[3]], people=ops[0:6], due=today + timedelta(days=10))
        capa.approve_plan(record, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version)
        db.session.refresh(deviation)
        dev.submit_for_approval(deviation, actor=c.supervisor, proof=_proof(c.supervisor),
                                expected_row_version=deviation.row_version, comment="Investigation complete.")

    _step(cast, pending)

    def approve_retraining(c: Cast):
        record = db.session.get(Capa, ids["open"])
        action = next(a for a in record.actions if a.retraining)
        capa.approve_retraining_action(action, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version)

    _step(cast, approve_retraining)

    def some_trained(c: Cast):
        record = db.session.get(Capa, ids["open"])
        rows = [a for a in capa.open_training(record)][:3]
        for assignment in rows:
            user = db.session.get(User, assignment.user_id)
            rs.mark_opened(assignment, user)
            rs.complete(assignment, user=user, proof=_proof(user), expected_version=None)

    _step(cast, some_trained)

    def closed_deviation(c: Cast):
        deviation = note(_report(c, "Broken sample container in the QC receiving area", days_ago=60,
                                 people=[ops[4]], documents=[sops[4]], area="QC receiving",
                                 description="A sample container broke during unpacking; the sample was re-taken."))
        _investigate(deviation, c, classification="minor", category="material",
                     root_cause="Container wall thickness below the supplier specification.",
                     investigation="Supplier lot checked; the complaint is handled with the supplier.")
        dev.submit_for_approval(deviation, actor=c.supervisor, proof=_proof(c.supervisor),
                                expected_row_version=deviation.row_version)
        dev.approve_closure(deviation, actor=c.qa, proof=_proof(c.qa), expected_row_version=deviation.row_version,
                            comment="No product impact; supplier complaint raised.")

    _step(cast, closed_deviation)

    def with_closed_capa(c: Cast):
        deviation = note(_report(
            c, "Wrong gowning sequence observed at the grade B entry", days_ago=75, people=[ops[5]],
            documents=[sops[5]], area="Airlock AL-3", description="Operator put on sterile gloves before the "
                                                                  "goggles; observed by QA on the floor."), "dev5")
        _investigate(deviation, c, classification="minor", category="human_error",
                     root_cause="Operator distracted by an alarm; the SOP sequence is correct.",
                     investigation="Interview and video review; one-off error, no contamination event.")
        record = note(_capa(c, "Reinforce the gowning sequence", source_type="deviation", source_id=deviation.id,
                            problem=f"{deviation.number}: gowning sequence not followed.",
                            root_cause=deviation.root_cause), "closed")
        _action(record, c, f"Retrain the operator on {sops[5].number}", retraining=True, documents=[sops[5]],
                people=[ops[5]], due=today + timedelta(days=7))
        capa.approve_plan(record, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version)

    _step(cast, with_closed_capa)

    def retrain_and_close(c: Cast):
        record = db.session.get(Capa, ids["closed"])
        action = record.actions[0]
        capa.approve_retraining_action(action, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version)

    _step(cast, retrain_and_close)

    def finish_closed(c: Cast):
        record = db.session.get(Capa, ids["closed"])
        for assignment in capa.open_training(record):
            user = db.session.get(User, assignment.user_id)
            rs.mark_opened(assignment, user)
            rs.complete(assignment, user=user, proof=_proof(user), expected_version=None)
        capa.complete_action(record.actions[0], actor=c.supervisor, evidence="Training record signed.")
        capa.start_effectiveness_check(record, actor=c.supervisor, expected_row_version=record.row_version,
                                       due_on=today)
        capa.record_effectiveness(record, actor=c.supervisor, proof=_proof(c.supervisor),
                                  expected_row_version=record.row_version, effective=True,
                                  result="Ten gowning observations, all correct.")
        capa.close(record, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version)
        deviation = db.session.get(Deviation, ids["dev5"])
        dev.submit_for_approval(deviation, actor=c.supervisor, proof=_proof(c.supervisor),
                                expected_row_version=deviation.row_version)
        dev.approve_closure(deviation, actor=c.qa2, proof=_proof(c.qa2), expected_row_version=deviation.row_version)

    _step(cast, finish_closed)

    def duplicate(c: Cast):
        deviation = note(_report(c, "Cold room door alarm (second report)", days_ago=1, people=[], documents=[],
                                 area="Cold room CR-2", description="Same event as the first cold room report."))
        dev.cancel(deviation, actor=c.supervisor, reason=f"Duplicate of {deviations[0]}.")

    _step(cast, duplicate)

    def draft_capa(c: Cast):
        record = note(_capa(c, "Supplier audit: incomplete certificates of analysis", source_type="audit_finding",
                            reference="Supplier audit SA-2026-07, finding 2",
                            problem="Three of ten certificates lacked the microbial limits.", root_cause=""))
        _action(record, c, "Request corrected certificates from the supplier", due=today + timedelta(days=30))

    _step(cast, draft_capa)

    def effectiveness(c: Cast):
        record = note(_capa(c, "Customer complaint: faded lot number on cartons", source_type="complaint",
                            reference="Complaint CMP-2026-031",
                            problem="Lot number illegible on cartons of lot 24-088.",
                            root_cause="Printer ribbon changed too late; no ribbon check in the line start list."))
        action = _action(record, c, "Add a ribbon check to the line start checklist", due=today)
        capa.approve_plan(record, actor=c.qa2, proof=_proof(c.qa2), expected_row_version=record.row_version)
        capa.complete_action(action, actor=c.supervisor, evidence="Checklist form revised and in use since lot 24-090.")
        capa.start_effectiveness_check(record, actor=c.supervisor, expected_row_version=record.row_version,
                                       due_on=today + timedelta(days=rng.choice([45, 60, 90])))

    _step(cast, effectiveness)

    if change_numbers:
        def from_change(c: Cast):
            record = note(_capa(c, "Data migration check missing from the logbook change", source_type="change_control",
                                source_id=change_numbers[2],
                                problem="The change plan did not verify the migrated cleaning records.",
                                root_cause="Change control template has no data migration section."))
            _action(record, c, "Add a data migration section to the change control template",
                    due=today + timedelta(days=21))
            capa.cancel(record, actor=c.qa, proof=_proof(c.qa), expected_row_version=record.row_version,
                        reason="Covered by the reworked change control itself; no separate CAPA needed.")

        _step(cast, from_change)
    return deviations, capas


def load(**_options) -> None:
    with transaction():
        existing = sum(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                       for model in (ChangeControl, Deviation, Capa))
        if existing:
            click.echo("demo quality events skipped: change controls, deviations or CAPAs exist")
            return
        cast = _cast()
        if cast is None:
            click.echo("demo quality events skipped: needs two QA approvers, two supervisors and six operators")
            return
        default_reason("Demo quality events")
    today = now_utc().date()
    changes = _changes(cast, today)
    deviations, capas = _quality(cast, today, changes)
    click.echo(f"demo quality events ready: {len(changes)} change controls, {len(deviations)} deviations, "
               f"{len(capas)} CAPAs (change owner login: {CHANGE_OWNER[0]})")
