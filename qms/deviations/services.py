"""Deviation use cases: report, edit, classify, investigate, link a CAPA, and the signed lifecycle
Open -> Under investigation -> Pending QA approval -> Closed (or Cancelled with a reason).

Every function flushes and never commits: views and tests wrap the call in `core.db.transaction()`, so any refusal
(ValidationError, InvalidTransition, NotPermitted, a refused signature) rolls back everything the call wrote. All
input is checked before the first write. The training adequacy panel is computed from the history
(`training.qualification`), never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from core.auth.models import User
from core.clock import now_utc
from core.db import db, default_reason, lock_row, set_reason
from core.errors import InvalidTransition, ValidationError
from core.org import Department, Site
from qms.capa.models import Capa
from qms.deviations.models import (
    CANCELLED,
    CLASSIFICATIONS,
    CLOSED,
    INVESTIGATION,
    OPEN,
    PENDING_APPROVAL,
    ROOT_CAUSE_CATEGORIES,
    STATUS_LABELS,
    Deviation,
    DeviationDocument,
    DeviationPerson,
)
from qms.documents import publish
from qms.documents.models import Document
from qms.numbering import next_number
from qms.rules import require, required_text
from signatures import models as sig
from signatures import services as signing
from signatures.lifecycle import Act, Lifecycle, Transition, comment, justification, never, only, required_comment
from signatures.services import SignerProof
from training.qualification.services import Qualification, qualify_many

EDITABLE = (OPEN, INVESTIGATION)
ACTIVE = (OPEN, INVESTIGATION, PENDING_APPROVAL)
MAX_LONG_TEXT = 20_000


# --- helpers ----------------------------------------------------------------------------------------------------------


def _optional(field: str, value: str | None, label: str, *, limit: int) -> str | None:
    value = (value or "").strip()
    if len(value) > limit:
        raise ValidationError(field, f"{label} must be at most {limit:,} characters.")
    return value or None


def _moment(field: str, value: datetime | None, label: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(field, f"{label} is required (date and time).")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_fresh(deviation: Deviation, expected_row_version: int | str | None) -> None:
    if expected_row_version is not None and str(expected_row_version) != str(deviation.row_version):
        raise InvalidTransition(f"{deviation.audit_title()} changed since the page was loaded; reload it and check "
                                f"it again.")


def _check_status(deviation: Deviation, allowed: tuple[str, ...], action: str) -> None:
    if deviation.status not in allowed:
        states = " or ".join(STATUS_LABELS[s] for s in allowed)
        raise InvalidTransition(f"Cannot {action} {deviation.audit_title()}: it is {deviation.status_label}; only a "
                                f"deviation {states} can be.")


def _begin(deviation: Deviation, actor: User, expected_row_version: int | str | None, action: str,
           allowed: tuple[str, ...], verb: str, permission: str = "quality.manage") -> None:
    """Permission, then the committed state under a row lock, then the state and version the page showed."""
    require(actor, permission, action)
    lock_row(deviation)
    _check_status(deviation, allowed, verb)
    _check_fresh(deviation, expected_row_version)


def _edit_reason(deviation: Deviation, reason: str | None, what: str) -> None:
    """While Open, edits are part of writing the report; once the investigation started, a reason is required."""
    reason = (reason or "").strip()
    if len(reason) > 2000:
        raise ValidationError("reason", "Reason for change must be at most 2,000 characters.")
    if reason:
        set_reason(reason)
    elif deviation.status == OPEN:
        default_reason(f"{what} while the deviation is open")
    else:
        raise ValidationError("reason", "A reason for change is required once the investigation has started.")


def _site_and_department(site_id: object, department_id: object) -> tuple[int, int]:
    site = db.session.get(Site, site_id) if isinstance(site_id, int) else None
    if site is None:
        raise ValidationError("site_id", "Site is required and must exist.")
    department = db.session.get(Department, department_id) if isinstance(department_id, int) else None
    if department is None:
        raise ValidationError("department_id", "Department is required and must exist.")
    if department.site_id != site.id:
        raise ValidationError("department_id", f"Department {department.name} is not part of site {site.code}.")
    return site.id, department.id


def _users(ids: Iterable[int]) -> list[User]:
    ids = sorted({int(i) for i in ids})
    found = list(db.session.scalars(sa.select(User).where(User.id.in_(ids)))) if ids else []
    if len(found) != len(ids):
        missing = sorted(set(ids) - {u.id for u in found})
        raise ValidationError("person_ids", f"Unknown person id(s): {', '.join(map(str, missing))}.")
    return found


def _documents(ids: Iterable[int]) -> list[Document]:
    ids = sorted({int(i) for i in ids})
    found = list(db.session.scalars(sa.select(Document).where(Document.id.in_(ids)))) if ids else []
    if len(found) != len(ids):
        missing = sorted(set(ids) - {d.id for d in found})
        raise ValidationError("document_ids", f"Unknown document id(s): {', '.join(map(str, missing))}.")
    return found


def _report_fields(*, title: str, occurred_at: datetime | None, discovered_at: datetime | None, site_id: object,
                   department_id: object, area: str | None, description: str,
                   immediate_actions: str | None) -> dict:
    fields = {
        "title": required_text("title", title, "Title", limit=300),
        "occurred_at": _moment("occurred_at", occurred_at, "Occurred at"),
        "discovered_at": _moment("discovered_at", discovered_at, "Discovered at"),
    }
    if fields["occurred_at"] > fields["discovered_at"]:
        raise ValidationError("discovered_at", "Discovered at cannot be before the deviation occurred.")
    if fields["discovered_at"] > now_utc():
        raise ValidationError("discovered_at", "Discovered at cannot be in the future.")
    fields["site_id"], fields["department_id"] = _site_and_department(site_id, department_id)
    fields["area"] = _optional("area", area, "Area / equipment", limit=200)
    fields["description"] = required_text("description", description, "Description", limit=MAX_LONG_TEXT)
    fields["immediate_actions"] = _optional("immediate_actions", immediate_actions, "Immediate actions",
                                            limit=MAX_LONG_TEXT)
    return fields


# --- queries ----------------------------------------------------------------------------------------------------------


def get_by_number(number: str) -> Deviation | None:
    return db.session.scalar(sa.select(Deviation).where(Deviation.number == (number or "").strip()))


def involved(deviation: Deviation) -> list[User]:
    ids = [p.user_id for p in deviation.people]
    return list(db.session.scalars(sa.select(User).where(User.id.in_(ids)).order_by(User.full_name))) if ids else []


def linked_documents(deviation: Deviation) -> list[Document]:
    ids = [d.document_id for d in deviation.documents]
    return list(db.session.scalars(sa.select(Document).where(Document.id.in_(ids)).order_by(Document.number))) \
        if ids else []


def is_overdue(deviation: Deviation, days: int = 30, now: datetime | None = None) -> bool:
    """Still active more than `days` days after discovery (the usual expectation for closing a deviation)."""
    from datetime import timedelta

    return deviation.status in ACTIVE and deviation.discovered_at < (now or now_utc()) - timedelta(days=days)


@dataclass(frozen=True)
class AdequacyLine:
    """One person x one procedure: qualified when the deviation occurred (`then`) and today (`now`)."""

    user: User
    document: Document
    then: Qualification
    now: Qualification


def training_adequacy(deviation: Deviation, at_now: datetime | None = None) -> list[AdequacyLine]:
    """For each involved person and each linked SOP: the revision that governed when the deviation occurred, whether
    and when the person had completed it by then, and today's answer for contrast. Computed from the history by the
    qualification rule (`qualify_many` gives the same answers as `qualification()` per pair)."""
    documents = [(d, publish.subject_of(d)) for d in linked_documents(deviation)]
    pairs = [(u, d, s) for u in involved(deviation) for d, s in documents]
    then = qualify_many([(u, s) for u, _d, s in pairs], deviation.occurred_at)
    now = qualify_many([(u, s) for u, _d, s in pairs], at_now or now_utc())
    return [AdequacyLine(u, d, then[(u.id, s.id)], now[(u.id, s.id)]) for u, d, s in pairs]


def signature_lines(deviation: Deviation) -> list[tuple[sig.Signature, str]]:
    return [(s, signing.manifestation(s)) for s in signing.signatures_for(deviation)]


# --- reporting and editing --------------------------------------------------------------------------------------------


def report_deviation(*, actor: User, title: str, occurred_at: datetime | None, discovered_at: datetime | None,
                     site_id: object, department_id: object, description: str, area: str | None = None,
                     immediate_actions: str | None = None, owner_id: int | None = None,
                     person_ids: Iterable[int] = (), document_ids: Iterable[int] = ()) -> Deviation:
    """Record a new deviation (Open), numbered DEV-YYYY-NNNN. The owner (default: the reporter) must be able to
    manage quality records: they carry the investigation and sign its submission."""
    require(actor, "quality.manage", "Reporting a deviation")
    fields = _report_fields(title=title, occurred_at=occurred_at, discovered_at=discovered_at, site_id=site_id,
                            department_id=department_id, area=area, description=description,
                            immediate_actions=immediate_actions)
    owner = actor if owner_id in (None, "", actor.id) else db.session.get(User, owner_id)
    if owner is None or not owner.active or not owner.can("quality.manage"):
        raise ValidationError("owner_id", "Owner must be an active person who can manage quality records.")
    people = _users(person_ids)
    documents = _documents(document_ids)
    default_reason("Deviation reported")
    deviation = Deviation(**fields, owner_id=owner.id, status=OPEN, number=next_number("DEV"))
    deviation.people = [DeviationPerson(user_id=u.id) for u in people]
    deviation.documents = [DeviationDocument(document_id=d.id) for d in documents]
    db.session.add(deviation)
    db.session.flush()
    return deviation


def update_deviation(deviation: Deviation, *, actor: User, expected_row_version: int | str | None,
                     reason: str | None = None, title: str, occurred_at: datetime | None,
                     discovered_at: datetime | None, site_id: object, department_id: object, description: str,
                     area: str | None = None, immediate_actions: str | None = None) -> Deviation:
    _begin(deviation, actor, expected_row_version, "Editing a deviation", EDITABLE, "edit")
    fields = _report_fields(title=title, occurred_at=occurred_at, discovered_at=discovered_at, site_id=site_id,
                            department_id=department_id, area=area, description=description,
                            immediate_actions=immediate_actions)
    _edit_reason(deviation, reason, "Deviation details edited")
    for name, value in fields.items():
        setattr(deviation, name, value)
    db.session.flush()
    return deviation


def _set_links(deviation: Deviation, actor: User, expected_row_version: int | str | None, reason: str | None,
               attribute: str, key: str, wanted: set[int], factory, what: str) -> Deviation:
    _begin(deviation, actor, expected_row_version, f"Changing the {what}", EDITABLE, f"change the {what} of")
    _edit_reason(deviation, reason, f"{what.capitalize()} changed")
    rows = getattr(deviation, attribute)
    have = {getattr(row, key) for row in rows}
    setattr(deviation, attribute, [row for row in rows if getattr(row, key) in wanted]
            + [factory(**{key: i}) for i in sorted(wanted - have)])
    db.session.flush()
    return deviation


def set_people(deviation: Deviation, *, actor: User, user_ids: Iterable[int], reason: str | None = None,
               expected_row_version: int | str | None = None) -> Deviation:
    """The people involved (the adequacy panel reads their training at the time of the deviation)."""
    require(actor, "quality.manage", "Changing the people involved")
    wanted = {u.id for u in _users(user_ids)}
    return _set_links(deviation, actor, expected_row_version, reason, "people", "user_id", wanted, DeviationPerson,
                      "people involved")


def set_documents(deviation: Deviation, *, actor: User, document_ids: Iterable[int], reason: str | None = None,
                  expected_row_version: int | str | None = None) -> Deviation:
    """The procedures (SOPs) the deviation concerns."""
    require(actor, "quality.manage", "Changing the procedures concerned")
    wanted = {d.id for d in _documents(document_ids)}
    return _set_links(deviation, actor, expected_row_version, reason, "documents", "document_id", wanted,
                      DeviationDocument, "procedures concerned")


def classify(deviation: Deviation, *, actor: User, classification: str, justification: str,
             reason: str | None = None, expected_row_version: int | str | None = None) -> Deviation:
    _begin(deviation, actor, expected_row_version, "Classifying a deviation", EDITABLE, "classify")
    if classification not in CLASSIFICATIONS:
        raise ValidationError("classification", f"Classification must be one of: "
                                                f"{', '.join(CLASSIFICATIONS.values())}.")
    justification = required_text("classification_justification", justification, "Classification justification",
                                  limit=MAX_LONG_TEXT)
    _edit_reason(deviation, reason, "Deviation classified")
    deviation.classification = classification
    deviation.classification_justification = justification
    db.session.flush()
    return deviation


def record_investigation(deviation: Deviation, *, actor: User, investigation: str, root_cause: str | None,
                         root_cause_category: str | None, reason: str | None = None,
                         expected_row_version: int | str | None = None) -> Deviation:
    """The investigation, its root cause and category (all three are needed to submit; the root cause may be left
    empty while the investigation is still running)."""
    _begin(deviation, actor, expected_row_version, "Recording the investigation", (INVESTIGATION,),
           "record the investigation of")
    investigation = required_text("investigation", investigation, "Investigation", limit=MAX_LONG_TEXT)
    root_cause = _optional("root_cause", root_cause, "Root cause", limit=MAX_LONG_TEXT)
    root_cause_category = (root_cause_category or "").strip() or None
    if root_cause_category is not None and root_cause_category not in ROOT_CAUSE_CATEGORIES:
        raise ValidationError("root_cause_category", f"Root cause category must be one of: "
                                                     f"{', '.join(ROOT_CAUSE_CATEGORIES.values())}.")
    if root_cause_category and not root_cause:
        raise ValidationError("root_cause", "Root cause is required when a category is chosen.")
    _edit_reason(deviation, reason, "Investigation recorded")
    deviation.investigation = investigation
    deviation.root_cause = root_cause
    deviation.root_cause_category = root_cause_category
    db.session.flush()
    return deviation


def link_capa(deviation: Deviation, *, actor: User, capa_number: str | None, reason: str | None = None,
              expected_row_version: int | str | None = None) -> Deviation:
    """Link an existing CAPA by its number (one raised from this deviation or any other); an empty number unlinks."""
    _begin(deviation, actor, expected_row_version, "Linking a CAPA", EDITABLE, "link a CAPA to")
    number = (capa_number or "").strip()
    capa = None
    if number:
        capa = db.session.scalar(sa.select(Capa).where(sa.func.upper(Capa.number) == number.upper()))
        if capa is None:
            raise ValidationError("capa_number", f"There is no CAPA numbered {number}.")
    _edit_reason(deviation, reason, f"CAPA {capa.number} linked" if capa else "CAPA unlinked")
    deviation.capa_id = capa.id if capa else None
    db.session.flush()
    return deviation


# --- lifecycle --------------------------------------------------------------------------------------------------------
# Each use case applies one transition of LIFECYCLE (below): the lifecycle locks the deviation, checks permission,
# state, the owner rules and the page's version, signs, moves the status and runs the effect.


def start_investigation(deviation: Deviation, *, actor: User,
                        expected_row_version: int | str | None = None) -> Deviation:
    LIFECYCLE.apply(deviation, "start", actor=actor, expected_version=expected_row_version)
    return deviation


def submit_for_approval(deviation: Deviation, *, actor: User, proof: SignerProof,
                        expected_row_version: int | str | None, comment: str | None = None) -> Deviation:
    """The owner signs "Authored" on the completed investigation; QA then approves closure."""
    LIFECYCLE.apply(deviation, "submit", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment)
    return deviation


def approve_closure(deviation: Deviation, *, actor: User, proof: SignerProof,
                    expected_row_version: int | str | None, comment: str | None = None) -> Deviation:
    """QA signs "Approved" on the submitted content, and the deviation closes."""
    LIFECYCLE.apply(deviation, "approve", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment)
    return deviation


def reject(deviation: Deviation, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           comment: str) -> Deviation:
    """QA signs "Rejected" with a comment; the deviation returns to investigation."""
    LIFECYCLE.apply(deviation, "reject", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment)
    return deviation


def cancel(deviation: Deviation, *, actor: User, reason: str,
           expected_row_version: int | str | None = None) -> Deviation:
    """A deviation raised in error (e.g. a duplicate) is cancelled with a reason, never deleted."""
    LIFECYCLE.apply(deviation, "cancel", actor=actor, expected_version=expected_row_version, text=reason)
    return deviation


def _check_submission(act: Act) -> None:
    deviation = act.record
    missing = [label for label, value in (("classification", deviation.classification),
                                          ("root cause", deviation.root_cause),
                                          ("root cause category", deviation.root_cause_category)) if not value]
    if missing:
        raise InvalidTransition(f"Cannot submit {deviation.audit_title()}: record its {', '.join(missing)} first.")


OWNER = only("owner_id", "the owner only",
             lambda deviation: f"Only the owner of {deviation.audit_title()} ({deviation.owner.full_name}) can "
                               f"submit it for QA approval.")
NOT_OWNER = never("owner_id", "not the owner (segregation of duties)",
                  lambda deviation: f"The owner of {deviation.audit_title()} cannot also approve or reject it.")

LIFECYCLE = Lifecycle(
    "deviation", title="Deviation", model=Deviation, noun="deviation", labels=STATUS_LABELS, initial=OPEN,
    require_version=False, state_refusal="Cannot {verb} {title}: it is {status}; only a {noun} {allowed} can be.",
    summary=lambda deviation: f"Deviation {deviation.number} — {deviation.title} ({deviation.status_label})",
    describe="""Reported Open by a quality manager, who owns it. The owner starts the investigation, records the
    classification and root cause and signs the submission; the signature binds the submitted content. Another QA
    approver approves closure or rejects it back to investigation. A deviation raised in error is cancelled with a
    reason.""",
    transitions=[
        Transition("start", "Start the investigation", (OPEN,), INVESTIGATION, "quality.manage",
                   task="Starting the investigation", verb="start the investigation of",
                   audit_reason="Investigation started",
                   done=lambda act: f"Investigation of {act.record.number} started."),
        Transition("submit", "Sign and submit for QA approval", (INVESTIGATION,), PENDING_APPROVAL, "quality.manage",
                   sig.AUTHORED, text=comment(), rules=(OWNER,), task="Submitting a deviation", verb="submit",
                   check=_check_submission, binds_result=True, since=lambda act: act.at,
                   audit_reason="Submitted for QA approval"),
        Transition("approve", "Approve and close", (PENDING_APPROVAL,), CLOSED, "quality.approve", sig.APPROVED,
                   text=comment(), rules=(NOT_OWNER,), task="Approving a deviation", verb="approve",
                   confirm="Sign, approve and close", audit_reason="Closure approved by QA",
                   effect=lambda act: setattr(act.record, "closed_at", now_utc())),
        Transition("reject", "Reject", (PENDING_APPROVAL,), INVESTIGATION, "quality.approve", sig.REJECTED,
                   text=required_comment("A comment saying what must change",
                                         help="Required when you reject: say what must change."),
                   rules=(NOT_OWNER,), task="Rejecting a deviation", verb="reject", confirm="Sign and reject",
                   style="outline-danger", audit_reason=lambda act: f"Rejected by QA: {act.text}"),
        Transition("cancel", "Cancel", ACTIVE, CANCELLED, "quality.manage",
                   text=justification("Reason for cancelling", what="Reason for cancelling"),
                   task="Cancelling a deviation", verb="cancel", confirm="Cancel the deviation",
                   style="outline-danger", audit_reason=lambda act: f"Cancelled: {act.text}",
                   effect=lambda act: setattr(act.record, "cancelled_reason", act.text),
                   done=lambda act: f"Deviation {act.record.number} cancelled."),
    ])
