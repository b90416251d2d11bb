"""CAPA use cases: raise, plan (actions), approve the plan, approve retraining (which assigns training), carry out
actions, check effectiveness, close or cancel.

Every function flushes and never commits: views wrap the call in `core.db.transaction()`, so a refusal rolls back
everything the call wrote, signatures and training assignments included. The CAPA row is locked before a transition
is checked. Signatures are on the CAPA record (its canonical content at the row version the signer saw); a signature
about one action names the action in its comment, and any change to the actions moves the CAPA's row version, so a
page showing an older plan is refused as stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified

from core.auth.models import User
from core.auth.permissions import PERMISSIONS
from core.clock import now_utc
from core.db import db, default_reason, lock_row
from core.errors import InvalidTransition, ValidationError
from core.org import JobFunction
from qms.capa.models import (
    ACTION_APPROVED,
    ACTION_CANCELLED,
    ACTION_DONE,
    ACTION_KINDS,
    ACTION_PLANNED,
    ACTION_STATUS_LABELS,
    CANCELLED,
    CLOSED,
    DRAFT,
    EFFECTIVENESS,
    OPEN,
    SOURCE_TYPES,
    STATUS_LABELS,
    Capa,
    CapaAction,
    CapaActionDocument,
    CapaActionJobFunction,
    CapaActionPerson,
)
from qms.documents import publish
from qms.documents.models import Document, Revision
from qms.numbering import next_number
from qms.rules import MAX_TEXT_CHARS, check_fresh, check_status, require, required_text, today_utc
from signatures import models as sig
from signatures.lifecycle import (
    DATE,
    UNCHANGED,
    YES_NO,
    Act,
    FormField,
    Lifecycle,
    Rule,
    Transition,
    comment,
    justification,
)
from signatures.services import SignerProof
from training import engine, items
from training.models import CANCELLED as TRAINING_CANCELLED
from training.models import COMPLETED, SOURCE_CAPA_ACTION, TrainingAssignment, TrainingItem, TrainingSubject
from training.models import OPEN as OPEN_TRAINING

LINKED_SOURCES = ("deviation", "change_control")  # sources that are records in Attest: named by id


# --- small helpers ---------------------------------------------------------------------------------------------------


def _optional_text(field: str, value: str | None, label: str, *, limit: int = MAX_TEXT_CHARS) -> str | None:
    value = (value or "").strip()
    return required_text(field, value, label, limit=limit) if value else None


def _due(field: str, value: object, label: str) -> date:
    if not isinstance(value, date):
        raise ValidationError(field, f"{label} is required (a date).")
    if value < today_utc():
        raise ValidationError(field, f"{label} cannot be in the past (today is {today_utc().isoformat()}).")
    return value


def _active_user(field: str, user_id: object, label: str) -> User:
    user = db.session.get(User, user_id) if isinstance(user_id, int) and not isinstance(user_id, bool) else None
    if user is None:
        raise ValidationError(field, f"{label} is required (an existing user).")
    if not user.active:
        raise ValidationError(field, f"{label} {user.full_name} has a deactivated account.")
    return user


def _touch(capa: Capa) -> None:
    """Move the CAPA's row version: its actions changed, so a signature seen on an older page must be refused."""
    flag_modified(capa, "status")


def _owner(owner_id: object) -> User:
    owner = _active_user("owner_id", owner_id, "Owner")
    if not owner.can("quality.manage"):
        raise ValidationError("owner_id", f"Owner {owner.full_name} cannot manage quality records (quality.manage): "
                                          f"the owner carries the CAPA through its actions.")
    return owner


def _edit_reason(capa: Capa, what: str) -> None:
    """A draft is edited freely (the audit trail records `what`); a CAPA that has left draft needs a reason."""
    if capa.status == DRAFT:
        default_reason(what)
    elif not db.session.info.get("audit_reason"):
        raise ValidationError("reason", f"A reason for change is required to change {capa.audit_title()}: it is "
                                        f"{capa.status_label}.")


def _source(source_type: str | None, source_id: object, source_reference: str | None) -> tuple[int | None, str | None]:
    if source_type not in SOURCE_TYPES:
        raise ValidationError("source_type", f"Source must be one of: {', '.join(SOURCE_TYPES.values())}.")
    reference = _optional_text("source_reference", source_reference, "Source reference", limit=200)
    if source_type in LINKED_SOURCES:
        from qms.change_control.models import ChangeControl
        from qms.deviations.models import Deviation

        model = Deviation if source_type == "deviation" else ChangeControl
        label = SOURCE_TYPES[source_type]
        if source_id in (None, ""):
            raise ValidationError("source_id", f"Name the {label.lower()} this CAPA comes from.")
        if isinstance(source_id, str) and not source_id.strip().isdigit():
            record = db.session.scalar(sa.select(model).where(model.number == source_id.strip().upper()))
        else:
            record = db.session.get(model, int(source_id))  # type: ignore[arg-type]
        if record is None:
            raise ValidationError("source_id", f"There is no {label.lower()} {source_id}.")
        return record.id, reference
    if reference is None:
        raise ValidationError("source_reference", f"A reference to the {SOURCE_TYPES[source_type].lower()} is "
                                                  f"required (e.g. the audit report and finding number).")
    return None, reference


def source_record(capa: Capa):
    """The deviation or change control the CAPA comes from, if it is a record in Attest."""
    if capa.source_id is None or capa.source_type not in LINKED_SOURCES:
        return None
    from qms.change_control.models import ChangeControl
    from qms.deviations.models import Deviation

    return db.session.get(Deviation if capa.source_type == "deviation" else ChangeControl, capa.source_id)


# --- the CAPA record -------------------------------------------------------------------------------------------------


def get_capa(number: str) -> Capa | None:
    return db.session.scalar(sa.select(Capa).where(Capa.number == (number or "").strip().upper()))


def create_capa(*, actor: User, title: str, source_type: str, problem_statement: str, owner_id: int,
                source_id: int | str | None = None, source_reference: str | None = None,
                root_cause: str | None = None) -> Capa:
    """Raise a CAPA in Draft. Its number is taken last, just before the record is written (see qms.numbering)."""
    require(actor, "quality.manage", "Raising a CAPA")
    title = required_text("title", title, "Title", limit=300)
    source_id, source_reference = _source(source_type, source_id, source_reference)
    problem_statement = required_text("problem_statement", problem_statement, "Problem statement")
    root_cause = _optional_text("root_cause", root_cause, "Root cause")
    owner = _owner(owner_id)
    capa = Capa(title=title, source_type=source_type, source_id=source_id, source_reference=source_reference,
                problem_statement=problem_statement, root_cause=root_cause, owner_id=owner.id, status=DRAFT,
                created_at=now_utc())
    default_reason("CAPA raised")
    capa.number = next_number("CAPA")
    db.session.add(capa)
    db.session.flush()
    if source_type == "deviation":
        _link_deviation(source_id, capa)
    return capa


def _link_deviation(deviation_id: int, capa: Capa) -> None:
    """A CAPA raised from a deviation is the deviation's CAPA, unless the deviation already has one or is closed."""
    from qms.deviations.models import CANCELLED as DEVIATION_CANCELLED
    from qms.deviations.models import CLOSED as DEVIATION_CLOSED
    from qms.deviations.models import Deviation

    deviation = db.session.get(Deviation, deviation_id)
    if deviation is not None and deviation.capa_id is None and \
            deviation.status not in (DEVIATION_CLOSED, DEVIATION_CANCELLED):
        deviation.capa_id = capa.id
        db.session.flush()


def update_capa(capa: Capa, *, actor: User, expected_row_version: int | str | None, title: str | None = None,
                problem_statement: str | None = None, root_cause: str | None = None, owner_id: int | None = None,
                source_reference: str | None = None) -> Capa:
    """Change the CAPA's description (None: unchanged). Free in Draft; with a reason for change once approved."""
    require(actor, "quality.manage", "Editing a CAPA")
    lock_row(capa)
    check_status(capa, (DRAFT, OPEN, EFFECTIVENESS), "edit", noun="CAPA", labels=STATUS_LABELS)
    check_fresh(capa, expected_row_version)
    changes: dict[str, object] = {}
    if title is not None:
        changes["title"] = required_text("title", title, "Title", limit=300)
    if problem_statement is not None:
        changes["problem_statement"] = required_text("problem_statement", problem_statement, "Problem statement")
    if root_cause is not None:
        changes["root_cause"] = _optional_text("root_cause", root_cause, "Root cause")
        if capa.status != DRAFT and changes["root_cause"] is None:
            raise ValidationError("root_cause", "Root cause is required once the plan is approved.")
    if owner_id is not None:
        changes["owner_id"] = _owner(owner_id).id
    if source_reference is not None:
        changes["source_reference"] = _optional_text("source_reference", source_reference, "Source reference",
                                                     limit=200)
        if changes["source_reference"] is None and capa.source_type not in LINKED_SOURCES:
            raise ValidationError("source_reference", "Source reference is required.")
    changes = {k: v for k, v in changes.items() if getattr(capa, k) != v}
    if not changes:
        return capa
    _edit_reason(capa, "Draft CAPA edited")
    for name, value in changes.items():
        setattr(capa, name, value)
    db.session.flush()
    return capa


# --- actions ---------------------------------------------------------------------------------------------------------


@dataclass
class ActionInput:
    kind: str
    description: str
    owner_id: int | None
    due_on: date | None
    retraining: bool = False
    document_ids: list[int] = field(default_factory=list)
    user_ids: list[int] = field(default_factory=list)
    job_function_ids: list[int] = field(default_factory=list)


def _ids(values: Iterable[object]) -> list[int]:
    out: list[int] = []
    for v in values or ():
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v not in out:
            out.append(v)
    return out


def _check_action(data: ActionInput) -> ActionInput:
    if data.kind not in ACTION_KINDS:
        raise ValidationError("kind", f"Kind must be one of: {', '.join(ACTION_KINDS.values())}.")
    description = required_text("description", data.description, "Description")
    owner = _active_user("owner_id", data.owner_id, "Action owner")
    due_on = _due("due_on", data.due_on, "Due date")
    documents, users, functions = _ids(data.document_ids), _ids(data.user_ids), _ids(data.job_function_ids)
    if data.retraining:
        if not documents:
            raise ValidationError("document_ids", "A retraining action names at least one document to train on.")
        if not users and not functions:
            raise ValidationError("user_ids", "A retraining action names the people and/or job functions to "
                                              "retrain.")
        found = set(db.session.scalars(sa.select(Document.id).where(Document.id.in_(documents))))
        if missing := [i for i in documents if i not in found]:
            raise ValidationError("document_ids", f"Unknown document(s): {', '.join(map(str, missing))}.")
        for uid in users:
            _active_user("user_ids", uid, "Person to retrain")
        found = set(db.session.scalars(sa.select(JobFunction.id).where(JobFunction.id.in_(functions),
                                                                      JobFunction.active.is_(True))))
        if missing := [i for i in functions if i not in found]:
            raise ValidationError("job_function_ids", f"Unknown or inactive job function(s): "
                                                      f"{', '.join(map(str, missing))}.")
    elif documents or users or functions:
        raise ValidationError("retraining", "Only a retraining action names documents, people or job functions; "
                                            "tick “Retraining action” or remove them.")
    return ActionInput(data.kind, description, owner.id, due_on, bool(data.retraining), documents, users, functions)


def _apply_targets(action: CapaAction, data: ActionInput) -> None:
    for relation, model, attr, wanted in ((action.documents, CapaActionDocument, "document_id", data.document_ids),
                                          (action.people, CapaActionPerson, "user_id", data.user_ids),
                                          (action.job_functions, CapaActionJobFunction, "job_function_id",
                                           data.job_function_ids)):
        for row in list(relation):
            if getattr(row, attr) not in wanted:
                relation.remove(row)
        have = {getattr(row, attr) for row in relation}
        for value in wanted:
            if value not in have:
                relation.append(model(**{attr: value}))


def add_action(capa: Capa, data: ActionInput, *, actor: User, expected_row_version: int | str | None) -> CapaAction:
    """Plan an action while the CAPA is in Draft."""
    require(actor, "quality.manage", "Planning a CAPA action")
    lock_row(capa)
    check_status(capa, (DRAFT,), "add an action to", noun="CAPA", labels=STATUS_LABELS)
    check_fresh(capa, expected_row_version)
    data = _check_action(data)
    default_reason("CAPA action planned")
    action = CapaAction(capa_id=capa.id, kind=data.kind, description=data.description, owner_id=data.owner_id,
                        due_on=data.due_on, retraining=data.retraining, status=ACTION_PLANNED)
    _apply_targets(action, data)
    db.session.add(action)
    _touch(capa)
    db.session.flush()
    return action


def _planned_action(action: CapaAction, actor: User, verb: str) -> Capa:
    require(actor, "quality.manage", f"{verb.capitalize()} a CAPA action")
    capa = action.capa
    lock_row(capa)
    check_status(capa, (DRAFT,), f"{verb} an action of", noun="CAPA", labels=STATUS_LABELS)
    if action.status != ACTION_PLANNED:
        raise InvalidTransition(f"{action.audit_title()} is {action.status}; only a planned action can be changed.")
    return capa


def edit_action(action: CapaAction, data: ActionInput, *, actor: User,
                expected_row_version: int | str | None) -> CapaAction:
    capa = _planned_action(action, actor, "edit")
    check_fresh(capa, expected_row_version)
    data = _check_action(data)
    default_reason("CAPA action edited")
    action.kind, action.description, action.owner_id = data.kind, data.description, data.owner_id
    action.due_on, action.retraining = data.due_on, data.retraining
    _apply_targets(action, data)
    _touch(capa)
    db.session.flush()
    return action


def remove_action(action: CapaAction, *, actor: User, expected_row_version: int | str | None) -> CapaAction:
    """Withdraw a planned action from a draft (it stays on record as cancelled: GxP records are never deleted)."""
    ACTIONS.apply(action, "remove", actor=actor, expected_version=expected_row_version)
    return action


def live_actions(capa: Capa) -> list[CapaAction]:
    return [a for a in capa.actions if a.status != ACTION_CANCELLED]


# --- signed steps ----------------------------------------------------------------------------------------------------


def approve_plan(capa: Capa, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
                 comment: str | None = None) -> Capa:
    """QA signs "Approved": Draft -> Open. The plan needs a root cause and at least one action. Actions other than
    retraining are approved with the plan; each retraining action is approved on its own (it assigns training)."""
    LIFECYCLE.apply(capa, "approve-plan", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment)
    return capa


@dataclass(frozen=True)
class RetrainingResult:
    created: int
    already_open: list[tuple[User, Revision]]  # left as they are: open training on that revision already


def retraining_people(action: CapaAction) -> list[User]:
    """The named people plus today's active holders of the named job functions."""
    ids = {p.user_id for p in action.people}
    functions = [j.job_function_id for j in action.job_functions]
    if functions:
        ids.update(engine.holders(functions))
    if not ids:
        return []
    return list(db.session.scalars(sa.select(User).where(User.id.in_(ids), User.active.is_(True))
                                   .order_by(User.full_name)))


def approve_retraining_action(action: CapaAction, *, actor: User, proof: SignerProof,
                              expected_row_version: int | str | None, comment: str | None = None) -> RetrainingResult:
    """QA signs "Approved" on the CAPA for one retraining action; in the same transaction the training engine assigns
    each document's current revision (the newest approved or effective one) to the named people and the holders of
    the named job functions, due on the action's due date and linked to the action. People with open training on
    that revision keep it; people who completed it train again (the next cycle). Everything or nothing."""
    return ACTIONS.apply(action, "approve-retraining", actor=actor, proof=proof,
                         expected_version=expected_row_version, text=comment).result


# --- carrying out the actions ----------------------------------------------------------------------------------------


def action_assignments(action_ids: Iterable[int]) -> list[TrainingAssignment]:
    ids = list(action_ids)
    if not ids:
        return []
    return list(db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id.in_(ids))
        .order_by(TrainingAssignment.source_id, TrainingAssignment.subject_id, TrainingAssignment.user_id,
                  TrainingAssignment.cycle)))


def _outstanding_text(assignments: Iterable[TrainingAssignment]) -> str:
    """'Otto Operator (otto.operator) on SOP-QA-001 rev 2.0; ...' for open assignments, in name order."""
    rows = db.session.execute(
        sa.select(User.full_name, User.username, TrainingSubject.key, TrainingItem.version_label)
        .select_from(TrainingAssignment)
        .join(User, User.id == TrainingAssignment.user_id)
        .join(TrainingSubject, TrainingSubject.id == TrainingAssignment.subject_id)
        .join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id)
        .where(TrainingAssignment.id.in_([a.id for a in assignments]))
        .order_by(User.full_name, TrainingSubject.key)).all()
    return "; ".join(f"{name} ({username}) on {key} rev {label}" for name, username, key, label in rows)


def complete_action(action: CapaAction, *, actor: User, evidence: str,
                    expected_row_version: int | str | None = None) -> CapaAction:
    """The action's owner (or a quality manager) records the evidence that it was done. A retraining action is done
    only when every assignment it created is completed."""
    ACTIONS.apply(action, "complete", actor=actor, expected_version=expected_row_version, text=evidence)
    return action


def start_effectiveness_check(capa: Capa, *, actor: User, expected_row_version: int | str | None,
                              due_on: date | None) -> Capa:
    """Open -> Effectiveness check, once every action is done (or was withdrawn)."""
    LIFECYCLE.apply(capa, "start-effectiveness", actor=actor, expected_version=expected_row_version,
                    values={"effectiveness_due_on": due_on})
    return capa


def record_effectiveness(capa: Capa, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
                         result: str, effective: bool | None, comment: str | None = None) -> Capa:
    """The verifier records the result and signs "Verified": the signature binds the result just written."""
    LIFECYCLE.apply(capa, "effectiveness", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment, values={"effectiveness_result": result, "effective": effective})
    return capa


def open_training(capa: Capa) -> list[TrainingAssignment]:
    return [a for a in action_assignments([a.id for a in capa.actions]) if a.status == OPEN_TRAINING]


def close(capa: Capa, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
          comment: str | None = None) -> Capa:
    """QA signs "Approved" to close, after the effectiveness check was recorded. Refused while any training the
    CAPA's actions created is open: the refusal names who is outstanding on what."""
    LIFECYCLE.apply(capa, "close", actor=actor, proof=proof, expected_version=expected_row_version, text=comment)
    return capa


def cancel(capa: Capa, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           reason: str) -> Capa:
    """QA signs "Cancelled" with the reason. Open actions are withdrawn and the open training they assigned is
    cancelled (completed training stays on record)."""
    LIFECYCLE.apply(capa, "cancel", actor=actor, proof=proof, expected_version=expected_row_version, text=reason)
    return capa


def cancel_action(action: CapaAction, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
                  reason: str) -> CapaAction:
    """QA withdraws one action of an open CAPA (planned or approved), signing "Cancelled" on the CAPA with the reason
    (e.g. the action proved unnecessary or is replaced by another). The open training it assigned is cancelled;
    completed training stays on record. A draft's actions are simply removed instead."""
    ACTIONS.apply(action, "cancel-action", actor=actor, proof=proof, expected_version=expected_row_version,
                  text=reason)
    return action


def overdue_capas(today: date | None = None) -> sa.Select:
    """Open CAPAs with a planned or approved action past its due date, and CAPAs whose effectiveness check is past
    its due date (the register's overdue view)."""
    today = today or today_utc()
    late_action = sa.exists().where(CapaAction.capa_id == Capa.id,
                                    CapaAction.status.in_([ACTION_PLANNED, ACTION_APPROVED]), CapaAction.due_on < today)
    return sa.select(Capa.id).where(sa.or_(
        sa.and_(Capa.status.in_([DRAFT, OPEN]), late_action),
        sa.and_(Capa.status == EFFECTIVENESS, Capa.effectiveness_due_on < today)))

# --- progress for the record page ------------------------------------------------------------------------------------


@dataclass
class Progress:
    assigned: int = 0
    completed: int = 0
    open: int = 0
    overdue: int = 0
    rows: list[tuple[TrainingAssignment, User, Document, Revision, sig.Signature | None]] = field(
        default_factory=list)


def progress(action_ids: Iterable[int], today: date | None = None) -> dict[int, Progress]:
    """action id -> assigned / completed / open / overdue, and each assignment with its person, revision and
    completion signature."""
    today = today or today_utc()
    ids = list(action_ids)
    out = {i: Progress() for i in ids}
    if not ids:
        return out
    rows = db.session.execute(
        sa.select(TrainingAssignment, User, Document, Revision, sig.Signature)
        .join(User, User.id == TrainingAssignment.user_id)
        .join(TrainingItem, TrainingItem.id == TrainingAssignment.item_id)
        .join(Revision, sa.and_(TrainingItem.source_type == publish.SOURCE, Revision.id == TrainingItem.source_id))
        .join(Document, Document.id == Revision.document_id)
        .outerjoin(sig.Signature, sig.Signature.id == TrainingAssignment.signature_id)
        .where(TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.source_id.in_(ids))
        .order_by(Document.number, User.full_name, TrainingAssignment.cycle)).all()
    for assignment, user, document, revision, signature in rows:
        p = out[assignment.source_id]
        p.rows.append((assignment, user, document, revision, signature))
        if assignment.status in (TRAINING_CANCELLED,):
            continue
        p.assigned += 1
        if assignment.status == COMPLETED:
            p.completed += 1
        elif assignment.status == OPEN_TRAINING:
            p.open += 1
            if assignment.due_on is not None and assignment.due_on < today:
                p.overdue += 1
    return out


def signatures_of(capa: Capa) -> list[sig.Signature]:
    return list(db.session.scalars(sa.select(sig.Signature).where(sig.Signature.record_type == capa.signable_type,
                                                                 sig.Signature.record_id == capa.id)
                                   .order_by(sig.Signature.signed_at, sig.Signature.id)))


def next_due(capa_ids: Iterable[int]) -> dict[int, date]:
    """capa id -> the next date something is due: the earliest open action, or the effectiveness check."""
    ids = list(capa_ids)
    if not ids:
        return {}
    due = dict(db.session.execute(
        sa.select(CapaAction.capa_id, sa.func.min(CapaAction.due_on)).join(Capa, Capa.id == CapaAction.capa_id)
        .where(CapaAction.capa_id.in_(ids), Capa.status.in_([DRAFT, OPEN]),
               CapaAction.status.in_([ACTION_PLANNED, ACTION_APPROVED]))
        .group_by(CapaAction.capa_id)).all())
    for capa_id, when in db.session.execute(sa.select(Capa.id, Capa.effectiveness_due_on).where(
            Capa.id.in_(ids), Capa.status == EFFECTIVENESS, Capa.effectiveness_due_on.is_not(None))):
        due[capa_id] = when
    return due


# --- the lifecycles: what each step checks and writes, and the declarations -----------------------------------------


def _check_plan(act: Act) -> None:
    capa = act.record
    if not (capa.root_cause or "").strip():
        raise ValidationError("root_cause", f"{capa.audit_title()} needs a root cause before its plan is approved.")
    if not live_actions(capa):
        raise InvalidTransition(f"{capa.audit_title()} needs at least one corrective or preventive action before its "
                                f"plan is approved.")


def _plan_approved(act: Act) -> None:
    capa = act.record
    capa.approved_at = act.at
    for action in live_actions(capa):
        if not action.retraining:
            ACTIONS.cascade(action, ACTION_APPROVED)
            action.approved_at = act.at


def _check_effectiveness_start(act: Act) -> None:
    capa = act.record
    pending = [a for a in capa.actions if a.status not in (ACTION_DONE, ACTION_CANCELLED)]
    if pending:
        raise InvalidTransition(f"{capa.audit_title()} still has actions to carry out: "
                                f"{', '.join(f'action {a.id} ({a.status})' for a in pending)}.")
    act.data["due_on"] = _due("effectiveness_due_on", act.values.get("effectiveness_due_on"),
                              "Effectiveness check due date")


def _check_effectiveness(act: Act) -> None:
    act.data["result"] = required_text("effectiveness_result", act.values.get("effectiveness_result"),
                                       "Effectiveness result")
    effective = act.values.get("effective")
    effective = {"yes": True, "no": False}.get(effective, effective) if isinstance(effective, str) else effective
    if not isinstance(effective, bool):
        raise ValidationError("effective", "Say whether the actions were effective (yes or no).")
    act.data["effective"] = effective


def _effectiveness_recorded(act: Act) -> None:
    act.record.effectiveness_result = act.data["result"]
    act.record.effective = act.data["effective"]


def _outcome(act: Act) -> str:
    return "effective" if act.data["effective"] else "not effective"


def _check_closable(act: Act) -> None:
    capa = act.record
    if capa.effective is None or not capa.effectiveness_result:
        raise InvalidTransition(f"{capa.audit_title()} cannot be closed before its effectiveness check is "
                                f"recorded and signed.")
    still_open = open_training(capa)
    if still_open:
        raise InvalidTransition(f"{capa.audit_title()} cannot be closed while training it assigned is open "
                                f"({len(still_open)}): {_outstanding_text(still_open)}.")


def _cancelled(act: Act) -> None:
    capa = act.record
    capa.cancelled_reason = act.text
    for action in capa.actions:
        if action.status in (ACTION_PLANNED, ACTION_APPROVED):
            ACTIONS.cascade(action, ACTION_CANCELLED)


def _cancel_open_training(act: Act) -> None:
    capa = act.record
    engine.cancel_open_from(SOURCE_CAPA_ACTION, [a.id for a in capa.actions],
                            reason=f"{capa.number} cancelled: {act.text}")


def _check_retraining(act: Act) -> None:
    action = act.record
    if not action.retraining:
        raise InvalidTransition(f"{action.audit_title()} is not a retraining action; it was approved with the plan.")
    targets: list[tuple[Document, Revision, TrainingItem]] = []
    for link in action.documents:
        document = db.session.get(Document, link.document_id)
        item = items.current_item(publish.subject_of(document))
        if item is None:
            raise ValidationError("document_ids", f"{document.number} has no approved or effective revision to "
                                                  f"train on.")
        targets.append((document, db.session.get(Revision, item.source_id), item))
    people = retraining_people(action)
    if not people:
        raise ValidationError("user_ids", "Nobody to retrain: the named people are deactivated and nobody holds "
                                          "the named job functions today.")
    names = ", ".join(f"{d.number} {r.label}" for d, r, _i in targets)
    note = f"Retraining action {action.id} approved ({names}; {len(people)} person(s))"
    if act.text:
        note = f"{note}: {act.text}"
    act.data.update(targets=targets, people=people, note=note)


def _retraining_approved(act: Act) -> None:
    act.record.approved_at = now_utc()
    _touch(act.record.capa)


def _assign_retraining(act: Act) -> RetrainingResult:
    action, capa, people = act.record, act.record.capa, act.data["people"]
    created, already = 0, []
    reason = f"{capa.number}: retraining action {action.id} — {action.description}"[:2000]
    by_id = {u.id: u for u in people}
    for _document, revision, item in act.data["targets"]:
        made, kept = engine.assign_people(item, list(by_id), due_on=action.due_on, source_type=SOURCE_CAPA_ACTION,
                                          source_id=action.id, reason=reason)
        created += made
        already.extend((by_id[uid], revision) for uid in sorted(kept, key=lambda uid: by_id[uid].full_name))
    return RetrainingResult(created, already)


def _retraining_done(act: Act) -> str:
    result = act.result
    return (f"{act.lifecycle.signed_message(act)} {result.created} training assignment(s) created"
            + (f"; {len(result.already_open)} already had open training" if result.already_open else "") + ".")


def _action_cancelled(act: Act) -> None:
    act.record.evidence = f"Cancelled: {act.text}"
    _touch(act.record.capa)


def _cancel_action_training(act: Act) -> None:
    action, capa = act.record, act.record.capa
    engine.cancel_open_from(SOURCE_CAPA_ACTION, [action.id],
                            reason=f"{capa.number} action {action.id} cancelled: {act.text}"[:2000])


def _check_completion(act: Act) -> None:
    action = act.record
    if action.retraining:
        open_rows = [a for a in action_assignments([action.id]) if a.status == OPEN_TRAINING]
        if open_rows:
            raise InvalidTransition(f"{action.audit_title()} cannot be completed while its training is open: "
                                    f"{_outstanding_text(open_rows)}.")


def _completed(act: Act) -> None:
    act.record.evidence = act.text
    act.record.completed_at = now_utc()
    _touch(act.record.capa)


def _not_owner(verb: str) -> Rule:
    """Segregation of duties: QA never approves, closes or cancels a CAPA they own."""
    return Rule("not the CAPA's owner (segregation of duties)",
                lambda record, user: user.id != _capa_of(record).owner_id,
                lambda record, _user: f"You own {_capa_of(record).audit_title()}; another QA approver must {verb} it.")


def _capa_of(record: Capa | CapaAction) -> Capa:
    return record.capa if isinstance(record, CapaAction) else record


def _capa_in(state: str, verb: str) -> Rule:
    """An action's step needs its CAPA in `state`."""
    return Rule(f"the CAPA is {STATUS_LABELS[state]}", lambda action, _user: action.capa.status == state,
                lambda action, _user: f"Cannot {verb} {action.capa.audit_title()}: it is {action.capa.status_label}; "
                                      f"only a CAPA in {STATUS_LABELS[state]} can be.",
                error=InvalidTransition)


OWNER_OR_MANAGER = Rule(
    "the action's owner or a quality manager",
    lambda action, user: user.id == action.owner_id or user.can("quality.manage"),
    lambda action, _user: f"Only the action owner or someone with the permission “"
                          f"{PERMISSIONS['quality.manage'].label}” (quality.manage) can complete "
                          f"{action.audit_title()}.")

LIFECYCLE = Lifecycle(
    "capa", title="CAPA", model=Capa, noun="CAPA", labels=STATUS_LABELS, initial=DRAFT,
    summary=lambda capa: f"{capa.audit_title()} — {capa.title} ({capa.status_label})",
    describe="""Raised in Draft by a quality manager, who owns it and plans its actions. Another QA approver signs the
    plan (Draft -> Open); its actions are then carried out (see CAPA action), the effectiveness check is started and
    signed "Verified" with its result, and QA closes the CAPA once the training its actions assigned is complete.
    QA may cancel it with a signed reason: its open actions and their open training are cancelled with it.""",
    transitions=[
        Transition("approve-plan", "Approve plan (sign)", (DRAFT,), OPEN, "quality.approve", sig.APPROVED,
                   text=comment(), rules=(_not_owner("approve the plan of"),), task="Approving a CAPA plan",
                   verb="approve the plan of", confirm="Sign and approve the plan", check=_check_plan,
                   signature_comment=lambda act: act.text or "CAPA plan approved", effect=_plan_approved,
                   audit_reason="CAPA plan approved"),
        Transition("start-effectiveness", "Start effectiveness check", (OPEN,), EFFECTIVENESS, "quality.manage",
                   fields=(FormField("effectiveness_due_on", "Effectiveness check due on", DATE,
                                     required="Due date is required (a date)."),),
                   task="Starting the effectiveness check", verb="start the effectiveness check of",
                   style="outline-primary", path="effectiveness/start", endpoint="start_effectiveness",
                   check=_check_effectiveness_start, audit_reason="Effectiveness check started",
                   effect=lambda act: setattr(act.record, "effectiveness_due_on", act.data["due_on"]),
                   done=lambda act: f"{act.record.number}: effectiveness check due on "
                                    f"{act.record.effectiveness_due_on.isoformat()}."),
        Transition("effectiveness", "Record effectiveness (sign)", (EFFECTIVENESS,), UNCHANGED, "quality.manage",
                   sig.VERIFIED, text=comment(),
                   fields=(FormField("effectiveness_result", "Effectiveness result",
                                     required="Effectiveness result is required."),
                           FormField("effective", "Were the actions effective?", YES_NO,
                                     required="Say whether the actions were effective.")),
                   task="Recording the effectiveness check", verb="record the effectiveness of",
                   confirm="Sign the effectiveness check", check=_check_effectiveness,
                   effect=_effectiveness_recorded, binds_result=True,
                   signature_comment=lambda act: act.text or f"Effectiveness check: {_outcome(act)}",
                   audit_reason=lambda act: f"Effectiveness verified: {_outcome(act)}"),
        Transition("close", "Close (sign)", (EFFECTIVENESS,), CLOSED, "quality.approve", sig.APPROVED, text=comment(),
                   rules=(_not_owner("close"),), task="Closing a CAPA", verb="close", confirm="Sign and close",
                   style="success", offered=lambda capa: capa.effective is not None, check=_check_closable,
                   signature_comment=lambda act: act.text or "CAPA closed", audit_reason="CAPA closed",
                   effect=lambda act: setattr(act.record, "closed_at", now_utc())),
        Transition("cancel", "Cancel CAPA (sign)", (DRAFT, OPEN, EFFECTIVENESS), CANCELLED, "quality.approve",
                   sig.CANCELLED, text=justification("Reason for cancelling", what="Reason for cancelling"),
                   rules=(_not_owner("cancel"),), task="Cancelling a CAPA", verb="cancel",
                   confirm="Sign and cancel the CAPA", style="outline-danger", effect=_cancelled,
                   after=_cancel_open_training, audit_reason=lambda act: f"CAPA cancelled: {act.text}"),
    ])

ACTIONS = Lifecycle(
    "capa_action", title="CAPA action", model=CapaAction, noun="action", labels=ACTION_STATUS_LABELS,
    initial=ACTION_PLANNED, signed=lambda action: action.capa, locks=lambda action: (action.capa, action),
    fresh_against=lambda action: action.capa,
    summary=lambda action: f"{action.capa.audit_title()} — {action.capa.title} ({action.capa.status_label}); "
                           f"action {action.id}: {action.description}",
    describe="""A corrective or preventive action of a CAPA. Its signed steps are signed on the CAPA (the signature
    names the action) and any change to an action moves the CAPA's row version, so a page showing an older plan is
    refused. Actions other than retraining are approved with the plan (a cascade of the CAPA's "approve-plan");
    a retraining action is approved on its own, which assigns its training. A draft's planned action is withdrawn;
    an open CAPA's action is cancelled by QA with a signed reason, as are all open actions when the CAPA is
    cancelled.""",
    transitions=[
        Transition("approve-retraining", "Approve retraining (sign)", (ACTION_PLANNED,), ACTION_APPROVED,
                   "quality.approve", sig.APPROVED, text=comment(),
                   rules=(_capa_in(OPEN, "approve a retraining action of"), _not_owner("approve retraining for")),
                   task="Approving a retraining action", verb="approve", confirm="Sign and approve the retraining",
                   state_refusal="{title} is already {status_lower}.", path="approve",
                   offered=lambda action: action.retraining, check=_check_retraining,
                   signature_comment=lambda act: act.data["note"], effect=_retraining_approved,
                   after=_assign_retraining, audit_reason=lambda act: act.data["note"], done=_retraining_done),
        Transition("complete", "Record as done", (ACTION_APPROVED,), ACTION_DONE, "quality.view",
                   text=justification("Evidence that the action was done", what="Evidence", limit=4000,
                                      field="evidence", help=lambda action: "What was done and where the records "
                                      "are." + (" A retraining action is done only when all its training is "
                                                "completed." if action.retraining else "")),
                   rules=(OWNER_OR_MANAGER, _capa_in(OPEN, "complete an action of")),
                   task="Completing a CAPA action", verb="complete", style="outline-success", needs_version=False,
                   endpoint="complete_action",
                   state_refusal="{title} is {status_lower}; only an approved action can be completed.",
                   check=_check_completion, effect=_completed,
                   audit_reason=lambda act: f"CAPA action completed: {act.text}"[:2000],
                   done=lambda act: f"Action {act.record.id} is done."),
        Transition("remove", "Withdraw", (ACTION_PLANNED,), ACTION_CANCELLED, "quality.manage",
                   rules=(_capa_in(DRAFT, "remove an action of"),), task="Remove a CAPA action", verb="remove",
                   style="outline-danger", state_refusal="{title} is {status_lower}; only a planned action can be "
                                                         "changed.",
                   effect=lambda act: _touch(act.record.capa), endpoint="remove_action",
                   audit_reason="CAPA action removed from the draft plan",
                   done=lambda act: f"Action {act.record.id} withdrawn from the plan."),
        Transition("cancel-action", "Cancel action (sign)", (ACTION_PLANNED, ACTION_APPROVED), ACTION_CANCELLED,
                   "quality.approve", sig.CANCELLED,
                   text=justification("Reason for cancelling", what="Reason for cancelling", limit=1900),
                   rules=(_capa_in(OPEN, "cancel an action of"), _not_owner("cancel an action of")),
                   task="Cancelling a CAPA action", verb="cancel", confirm="Sign and cancel the action",
                   style="outline-danger", path="cancel",
                   state_refusal="{title} is {status_lower}; only a planned or approved action can be cancelled.",
                   signature_comment=lambda act: f"Action {act.record.id} cancelled: {act.text}",
                   effect=_action_cancelled, after=_cancel_action_training,
                   audit_reason=lambda act: f"Action {act.record.id} cancelled: {act.text}"),
    ])
