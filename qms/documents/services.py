"""Document control use cases: create documents, revise them, route, sign, approve, release, retire.

Two parts live beside this module, which calls both: `qms.documents.publish` (what document control tells training:
the document as a training subject with its audience, each approved revision as a training item with its
assignments, its release and retirement) and `qms.documents.release` (how a due revision takes effect, the "when
trained" hold and QA's override of it). Neither imports this module. The rules
shared with the other quality records are `qms.rules`.

Every function flushes and never commits: views and CLI commands wrap the call in `core.db.transaction()`, so a
refusal (ValidationError, InvalidTransition, NotPermitted, or a refused signature) rolls back everything the call
wrote, signatures included. State changes that need a signature take the `SignerProof` from
`signatures.services.authenticate()` and record the signature in the same transaction as the state change.

The revision row is locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE)
before a transition is checked, so two people acting at once see each other's committed signatures: the last of
several approvers signing at the same moment still moves the revision to Approved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa
from flask import current_app

from core.auth.models import User, UserRole
from core.auth.permissions import PERMISSIONS, ROLES
from core.clock import now_utc
from core.db import db, default_reason, lock_row
from core.errors import InvalidTransition, NotPermitted, ValidationError
from core.org import Department
from qms.documents import publish, release
from qms.documents.models import (
    APPROVE,
    APPROVED,
    DOC_TYPES,
    DRAFT,
    EFFECTIVE,
    IN_REVIEW,
    OBSOLETE,
    RELEASE_POLICIES,
    REVIEW,
    STATUS_LABELS,
    SUPERSEDED,
    Document,
    Revision,
    RevisionRoute,
)
from qms.documents.pdf import NotRenderable, check_renderable
from qms.documents.release import held_for_training, release_held, release_revisions
from qms.documents.rendering import render_markdown
from qms.rules import add_months, check_fresh, check_status, require, required_text, today_utc, whole_number
from signatures import models as sig
from signatures.lifecycle import (
    DATE,
    UNCHANGED,
    Act,
    FormField,
    Lifecycle,
    Rule,
    SystemTransition,
    Transition,
    comment,
    justification,
    never,
    only,
    required_comment,
)
from signatures.services import SignerProof
from training.matrix.services import check_audience

MAX_MARKDOWN_CHARS = 1_000_000
OPEN_STATUSES = (DRAFT, IN_REVIEW)
STEP_PERMISSION = {REVIEW: "documents.review", APPROVE: "documents.approve"}
STEP_FIELD = {REVIEW: "reviewer_ids", APPROVE: "approver_ids"}
STEP_MEANING = {REVIEW: sig.REVIEWED, APPROVE: sig.APPROVED}


# --- small helpers ----------------------------------------------------------------------------------------------------


def _names(users: Iterable[User]) -> str:
    return ", ".join(u.full_name for u in users)


# --- queries for views ------------------------------------------------------------------------------------------------


def get_document(number: str) -> Document | None:
    return db.session.scalar(sa.select(Document).where(Document.number == (number or "").strip()))


def latest_revision(document: Document) -> Revision | None:
    """The revision with the highest label, whatever its status (the base of the next label)."""
    return db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id)
                             .order_by(Revision.major.desc(), Revision.minor.desc()).limit(1))


def current_effective(document: Document) -> Revision | None:
    """The revision in force today, if any."""
    return db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id,
                                                       Revision.status == EFFECTIVE)
                             .order_by(Revision.major.desc(), Revision.minor.desc()).limit(1))


def open_revision(document: Document) -> Revision | None:
    """The revision being written or reviewed (at most one per document)."""
    return db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id,
                                                       Revision.status.in_(OPEN_STATUSES)).limit(1))


def pending_revisions(document: Document) -> list[Revision]:
    """Approved revisions waiting for their effective date, oldest label first."""
    return list(db.session.scalars(sa.select(Revision).where(Revision.document_id == document.id,
                                                             Revision.status == APPROVED)
                                   .order_by(Revision.major, Revision.minor)))


def predecessor(revision: Revision) -> Revision | None:
    """The latest earlier revision that was ever in force (the one this revision superseded or will supersede)."""
    return db.session.scalar(
        sa.select(Revision).where(Revision.document_id == revision.document_id, Revision.effective_at.is_not(None),
                                  sa.tuple_(Revision.major, Revision.minor) < sa.tuple_(revision.major, revision.minor))
        .order_by(Revision.major.desc(), Revision.minor.desc()).limit(1))


def next_label(document: Document, *, major: bool) -> tuple[int, int]:
    """The label a new revision gets: 1.0 (or 0.1 if minor) for the first, otherwise the latest plus 1.0 or 0.1."""
    latest = latest_revision(document)
    if latest is None:
        return (1, 0) if major else (0, 1)
    return (latest.major + 1, 0) if major else (latest.major, latest.minor + 1)


def eligible_signers(step: str, *, exclude: User | None = None) -> list[User]:
    """Active users who may be routed for `step` (review or approve), never including `exclude` (the author)."""
    permission = STEP_PERMISSION[step]
    codes = [code for code, role in ROLES.items() if permission in role.permissions]
    stmt = (sa.select(User).join(UserRole, UserRole.user_id == User.id)
            .where(User.active.is_(True), UserRole.role.in_(codes)).distinct().order_by(User.full_name))
    return [u for u in db.session.scalars(stmt) if exclude is None or u.id != exclude.id]


def round_signatures(revision: Revision) -> list[sig.Signature]:
    """Signatures that count for the current submission: on this submission's version and made since it was
    submitted. Signatures of an earlier, rejected submission stay on record but do not count."""
    stmt = sa.select(sig.Signature).where(sig.Signature.record_type == revision.signable_type,
                                          sig.Signature.record_id == revision.id,
                                          sig.Signature.record_version == revision.signable_version)
    if revision.submitted_at is not None:
        stmt = stmt.where(sig.Signature.signed_at >= revision.submitted_at)
    return list(db.session.scalars(stmt.order_by(sig.Signature.signed_at, sig.Signature.id)))


def routed(revision: Revision, step: str) -> list[User]:
    return [route.user for route in revision.routes if route.step == step]


def outstanding(revision: Revision) -> dict[str, list[User]]:
    """Who still has to sign the current submission, by step ("review", "approve"); nobody unless In review."""
    if revision.status != IN_REVIEW:
        return {REVIEW: [], APPROVE: []}
    signed: dict[str, set[int]] = {REVIEW: set(), APPROVE: set()}
    for signature in round_signatures(revision):
        for step, meaning in STEP_MEANING.items():
            if signature.meaning == meaning:
                signed[step].add(signature.signer_id)
    return {step: [u for u in routed(revision, step) if u.id not in signed[step]] for step in (REVIEW, APPROVE)}


def reviews_due(today: date | None = None) -> list[Revision]:
    """Effective revisions whose periodic review is due on or before `today`, most overdue first."""
    today = today or today_utc()
    return list(db.session.scalars(
        sa.select(Revision).join(Document).where(Revision.status == EFFECTIVE, Revision.review_due_on <= today)
        .order_by(Revision.review_due_on, Document.number)))


def record_periodic_review(revision: Revision, *, actor: User, proof: SignerProof,
                           expected_row_version: int | str | None, comment: str) -> Revision:
    """The owner or QA confirms, with a signed "Reviewed", that the effective revision is still fit for use; the next
    periodic review falls due one interval from today. Changes found in the review go through a new revision."""
    LIFECYCLE.apply(revision, "periodic-review", actor=actor, proof=proof, expected_version=expected_row_version,
                    text=comment)
    return revision


# --- documents --------------------------------------------------------------------------------------------------------


def _check_number(number: str) -> str:
    number = (number or "").strip()
    pattern = current_app.config["ATTEST_DOCUMENT_NUMBER_PATTERN"]
    if not number:
        raise ValidationError("number", "Document number is required.")
    if len(number) > 40 or not re.fullmatch(pattern, number):
        raise ValidationError("number", f"Document number {number!r} does not match the numbering format "
                                        f"{pattern} (for example SOP-QA-001).")
    taken = db.session.scalar(sa.select(Document.number).where(sa.func.lower(Document.number) == number.lower()))
    if taken is not None:
        raise ValidationError("number", f"Document number {taken} already exists; document numbers are unique and "
                                        f"never reused.")
    return number


def _check_department(department_id: int | None) -> int:
    if department_id is None or db.session.get(Department, department_id) is None:
        raise ValidationError("department_id", "Owning department must be an existing department.")
    return department_id


def _check_owner(owner_id: int | None) -> int:
    owner = db.session.get(User, owner_id) if owner_id is not None else None
    if owner is None or not owner.active:
        raise ValidationError("owner_id", "Owner must be an active user.")
    return owner.id


def create_document(*, number: str, title: str, doc_type: str, department_id: int, owner_id: int,
                    review_interval_months: int = 24, training_window_days: int = 14,
                    audience_job_function_ids: Iterable[int] = (), actor: User) -> Document:
    """Register a controlled document (its first revision is started separately with `start_revision`)."""
    require(actor, "documents.author", "Creating a document")
    number = _check_number(number)
    title = required_text("title", title, "Title", limit=300)
    if doc_type not in DOC_TYPES:
        raise ValidationError("doc_type", f"Type must be one of: {', '.join(DOC_TYPES)}.")
    document = Document(
        number=number, title=title, doc_type=doc_type, department_id=_check_department(department_id),
        owner_id=_check_owner(owner_id),
        review_interval_months=whole_number("review_interval_months", review_interval_months,
                                            "Periodic review interval (months)", 1, 120),
        training_window_days=whole_number("training_window_days", training_window_days, "Training window (days)",
                                          0, 365),
        created_at=now_utc())
    audience = check_audience(audience_job_function_ids)
    db.session.add(document)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:  # the same number created by someone else at the same moment
        raise ValidationError("number", f"Document number {number} already exists; document numbers are unique "
                                        f"and never reused.") from None
    publish.register(document)
    publish.set_audience(document, audience)
    return document


def update_document_metadata(document: Document, *, actor: User, owner_id: int | None = None,
                             department_id: int | None = None, review_interval_months: int | None = None,
                             training_window_days: int | None = None,
                             audience_job_function_ids: Iterable[int] | None = None,
                             min_read_seconds: int | None = None, release_policy: str | None = None) -> Document:
    """Change who owns the document, its department, intervals and training audience (None: unchanged).

    Number, title and type are not changeable: they are part of what every signature on the document binds.
    A changed review interval moves the periodic review date of the revision in force."""
    if not (actor is not None and actor.active and (actor.can("documents.author") or actor.can("documents.approve"))):
        raise NotPermitted("Changing a document's details needs the permission “Author document revisions” "
                           "(documents.author) or “Approve document revisions (QA)” (documents.approve).")
    if not db.session.info.get("audit_reason"):
        raise ValidationError("reason", "A reason for change is required to change a document's details.")
    # validate and read everything first, then change each row once (see qms.documents.release.release_revisions)
    changes: dict[str, int] = {}
    if owner_id is not None:
        changes["owner_id"] = _check_owner(owner_id)
    if department_id is not None:
        changes["department_id"] = _check_department(department_id)
    if training_window_days is not None:
        changes["training_window_days"] = whole_number("training_window_days", training_window_days,
                                                       "Training window (days)", 0, 365)
    if min_read_seconds is not None:
        changes["min_read_seconds"] = whole_number("min_read_seconds", min_read_seconds,
                                                   "Minimum reading time (seconds)", 0, 3600)
    if release_policy is not None:
        if release_policy not in RELEASE_POLICIES:
            raise ValidationError("release_policy", f"Release policy must be one of: {', '.join(RELEASE_POLICIES)}.")
        changes["release_policy"] = release_policy
    effective = None
    if review_interval_months is not None:
        changes["review_interval_months"] = whole_number("review_interval_months", review_interval_months,
                                                         "Periodic review interval (months)", 1, 120)
        effective = current_effective(document)
    wanted = check_audience(audience_job_function_ids) if audience_job_function_ids is not None else None
    with db.session.no_autoflush:
        for name, value in changes.items():
            setattr(document, name, value)
        if effective is not None and effective.effective_on is not None:
            effective.review_due_on = add_months(effective.effective_on, changes["review_interval_months"])
    db.session.flush()
    publish.sync(document)
    if wanted is not None:
        publish.set_audience(document, wanted)
    return document


# --- revisions: drafting ----------------------------------------------------------------------------------------------


def _check_pdf(pdf_bytes: bytes) -> None:
    limit_mb = current_app.config["ATTEST_MAX_UPLOAD_MB"]
    if not pdf_bytes.startswith(b"%PDF-"):
        raise ValidationError("content_pdf", "The uploaded file is not a PDF (it does not start with %PDF-).")
    if len(pdf_bytes) > limit_mb * 1024 * 1024:
        raise ValidationError("content_pdf", f"The PDF is {len(pdf_bytes) / 1024 / 1024:.1f} MB; the limit is "
                                             f"{limit_mb} MB.")
    # a file that only looks like a PDF would break every controlled copy later: read it now
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(pdf_bytes), strict=False)
        pages = len(reader.pages)
        encrypted = reader.is_encrypted
    except (PdfReadError, ValueError, KeyError, TypeError, OSError):
        raise ValidationError("content_pdf", "The uploaded PDF cannot be read (damaged or not a PDF).") from None
    if encrypted:
        raise ValidationError("content_pdf", "The uploaded PDF is encrypted; upload an unprotected PDF.")
    if pages == 0:
        raise ValidationError("content_pdf", "The uploaded PDF has no pages.")


def _set_content(revision: Revision, *, content_markdown: str | None, pdf_bytes: bytes | None,
                 pdf_filename: str | None) -> None:
    if pdf_bytes is not None and (content_markdown or "").strip():
        raise ValidationError("content_pdf", "Give the content either as a PDF or as Markdown, not both.")
    if pdf_bytes is not None:
        _check_pdf(bytes(pdf_bytes))
        name = re.split(r"[\\/]", (pdf_filename or "").strip())[-1][:255] or None
        revision.content_format, revision.content_pdf, revision.content_filename = "pdf", bytes(pdf_bytes), name
        revision.content_markdown = None
    else:
        text = (content_markdown or "").replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            raise ValidationError("content_markdown", "Content is required: write it in Markdown or upload a PDF.")
        if len(text) > MAX_MARKDOWN_CHARS:
            raise ValidationError("content_markdown", f"Content must be at most {MAX_MARKDOWN_CHARS:,} characters "
                                                      f"(it has {len(text):,}).")
        try:
            check_renderable(render_markdown(text))
        except NotRenderable as exc:
            raise ValidationError("content_markdown", f"The content cannot be printed as a controlled copy: {exc}. "
                                                      f"Simplify it or upload it as a PDF.") from None
        revision.content_format, revision.content_markdown = "markdown", text
        revision.content_pdf, revision.content_filename = None, None
    revision.content_sha256 = revision.computed_content_sha256()


def start_revision(document: Document, *, author: User, major: bool, change_summary: str, reason: str,
                   content_markdown: str | None = None, pdf_bytes: bytes | None = None,
                   pdf_filename: str | None = None) -> Revision:
    """Open the next revision of `document` in Draft. Only one revision per document may be open (Draft or In
    review): the document row is locked first so two authors starting at once cannot both open one."""
    require(author, "documents.author", "Starting a revision")
    db.session.execute(sa.select(Document.id).where(Document.id == document.id).with_for_update())
    existing = db.session.scalar(sa.select(Revision).where(Revision.document_id == document.id,
                                                           Revision.status.in_(OPEN_STATUSES))
                                 .execution_options(populate_existing=True).limit(1))
    if existing is not None:
        raise InvalidTransition(f"{document.number} already has an open revision ({existing.label}, "
                                f"{existing.status_label}); finish or reject it before starting another.")
    change_summary = required_text("change_summary", change_summary, "Change summary")
    reason = required_text("reason", reason, "Reason for revision")
    revision_major, revision_minor = next_label(document, major=bool(major))
    revision = Revision(document=document, major=revision_major, minor=revision_minor, status=DRAFT,
                        change_summary=change_summary, reason=reason, author_id=author.id, created_at=now_utc())
    _set_content(revision, content_markdown=content_markdown, pdf_bytes=pdf_bytes, pdf_filename=pdf_filename)
    db.session.add(revision)
    db.session.flush()
    return revision


def _check_author(revision: Revision, actor: User, action: str) -> None:
    require(actor, "documents.author", action)
    if actor.id != revision.author_id:
        raise NotPermitted(f"Only the author of {revision.audit_title()} ({revision.author.full_name}) can "
                           f"{action.lower()}.")


def update_draft(revision: Revision, *, actor: User, expected_row_version: int | str | None,
                 change_summary: str | None = None, reason: str | None = None, content_markdown: str | None = None,
                 pdf_bytes: bytes | None = None, pdf_filename: str | None = None) -> Revision:
    """Edit a draft (None: unchanged; blank Markdown without a new file keeps a PDF draft's file, as an edit form
    that does not re-upload sends). The content is frozen once the revision leaves Draft; after a rejection it is a
    draft again and editable."""
    lock_row(revision)
    check_status(revision, DRAFT, "edit", noun="revision", labels=STATUS_LABELS)
    _check_author(revision, actor, "Editing the draft")
    check_fresh(revision, expected_row_version)
    if change_summary is not None:
        revision.change_summary = required_text("change_summary", change_summary, "Change summary")
    if reason is not None:
        revision.reason = required_text("reason", reason, "Reason for revision")
    keeps_pdf = revision.content_format == "pdf" and pdf_bytes is None and not (content_markdown or "").strip()
    if (content_markdown is not None or pdf_bytes is not None) and not keeps_pdf:
        _set_content(revision, content_markdown=content_markdown, pdf_bytes=pdf_bytes, pdf_filename=pdf_filename)
    db.session.flush()
    return revision


def _routed_users(revision: Revision, ids: Iterable[int], step: str) -> list[User]:
    field = STEP_FIELD[step]
    try:
        wanted = list(dict.fromkeys(int(i) for i in ids))
    except (TypeError, ValueError):
        raise ValidationError(field, "Routing must list user ids.") from None
    found = {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(wanted)))} if wanted else {}
    missing = [str(i) for i in wanted if i not in found]
    if missing:
        raise ValidationError(field, f"Unknown user id(s): {', '.join(missing)}.")
    users = [found[i] for i in wanted]
    if any(u.id == revision.author_id for u in users):
        raise ValidationError(field, f"Segregation of duties: the author ({revision.author.full_name}) can never "
                                     f"review or approve their own revision.")
    _check_eligible(users, step, field)
    return users


def _check_eligible(users: Iterable[User], step: str, field: str) -> None:
    permission = STEP_PERMISSION[step]
    unfit = [u for u in users if not u.active or not u.can(permission)]
    if unfit:
        raise ValidationError(field, f"{'Reviewers' if step == REVIEW else 'Approvers'} must be active users holding "
                                     f"“{PERMISSIONS[permission].label}” ({permission}); not: {_names(unfit)}.")


def set_routing(revision: Revision, *, actor: User, reviewer_ids: Iterable[int],
                approver_ids: Iterable[int]) -> Revision:
    """Choose who reviews and who approves the draft. Each person takes one step: routing someone twice would let
    fewer people satisfy the routing than it shows."""
    lock_row(revision)
    check_status(revision, DRAFT, "change the routing of", noun="revision", labels=STATUS_LABELS)
    _check_author(revision, actor, "Routing the revision")
    reviewers = _routed_users(revision, reviewer_ids, REVIEW)
    approvers = _routed_users(revision, approver_ids, APPROVE)
    both = [u for u in reviewers if u.id in {a.id for a in approvers}]
    if both:
        raise ValidationError("approver_ids", f"A person is routed either to review or to approve, not both: "
                                              f"{_names(both)}.")
    wanted = {(u.id, REVIEW) for u in reviewers} | {(u.id, APPROVE) for u in approvers}
    current = {(r.user_id, r.step): r for r in revision.routes}
    if current.keys() - wanted:
        default_reason("Routing of the draft revision changed")
    for key, route in current.items():
        if key not in wanted:
            revision.routes.remove(route)
    db.session.flush()  # removals first: a person may move from one step to the other
    for user in [*reviewers, *approvers]:
        step = REVIEW if user in reviewers else APPROVE
        if (user.id, step) not in current:
            revision.routes.append(RevisionRoute(user_id=user.id, step=step))
    db.session.flush()
    db.session.expire(revision, ["routes"])
    return revision


# --- revisions: the signed lifecycle ----------------------------------------------------------------------------------
# Each use case applies one transition of LIFECYCLE (declared at the end of the module): the lifecycle locks the
# revision, checks permission, state, the author and routing rules and the page's version, signs, moves the status
# and runs the effect below, in the caller's unit of work.


def _apply(revision: Revision, action: str, *, actor: User, proof: SignerProof,
           expected_row_version: int | str | None, text: str | None = None, **values) -> Revision:
    LIFECYCLE.apply(revision, action, actor=actor, proof=proof, expected_version=expected_row_version, text=text,
                    values=values)
    return revision


def submit_for_review(revision: Revision, *, actor: User, proof: SignerProof,
                      expected_row_version: int | str | None) -> Revision:
    """The author signs "Authored" and the revision goes to its routed reviewers and approvers."""
    return _apply(revision, "submit", actor=actor, proof=proof, expected_row_version=expected_row_version)


def review(revision: Revision, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           comment: str | None = None) -> Revision:
    """A routed reviewer signs "Reviewed"."""
    return _apply(revision, "review", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment)


def approve(revision: Revision, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
            effective_on: date | None = None, comment: str | None = None) -> Revision:
    """A routed approver signs "Approved", once every routed reviewer has reviewed this submission. The last
    approver's signature approves the revision and fixes its effective date (default: today + the document's
    training window; never before the approval date)."""
    return _apply(revision, "approve", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment, effective_on=effective_on)


def reject(revision: Revision, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
           comment: str) -> Revision:
    """A routed reviewer or approver signs "Rejected" with their comments; the revision returns to Draft for the
    author. Signatures of this submission stay on record but do not count for the resubmission."""
    return _apply(revision, "reject", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=comment)


def release_due(today: date | None = None) -> list[Revision]:
    """Make every approved revision whose effective date has come effective, superseding the revision in force.
    A document released "when trained" is held while anyone assigned its revision has not trained, unless QA signed
    an override (`qms.documents.release.override_release`).

    Idempotent, and safe when several servers run it at once: on PostgreSQL each run locks the due revisions it
    takes (SKIP LOCKED leaves those another run holds to that run) and re-checks their status once locked; the
    document row is locked before its effective revision is superseded. On SQLite the write transaction already
    serialises runs. Returns the released revisions (when two of one document fall due together, the older one is
    released and superseded by the newer at once)."""
    today = today or today_utc()
    default_reason("Released on its effective date")
    due = db.session.scalars(
        sa.select(Revision).where(Revision.status == APPROVED, Revision.effective_on <= today)
        .order_by(Revision.document_id, Revision.major, Revision.minor)
        .with_for_update(skip_locked=True).execution_options(populate_existing=True)).all()
    by_document: dict[int, list[Revision]] = {}
    held = held_for_training([r.id for r in due])
    for revision in due:
        if revision.status == APPROVED and revision.effective_on is not None and revision.effective_on <= today \
                and revision.id not in held:
            by_document.setdefault(revision.document_id, []).append(revision)
    now = now_utc()
    released: list[Revision] = []
    for revisions in by_document.values():
        release_revisions(revisions, now)
        released.extend(revisions)
    return released


def make_obsolete(revision: Revision, *, actor: User, proof: SignerProof, expected_row_version: int | str | None,
                  reason: str) -> Revision:
    """QA retires the revision in force: it signs "Made obsolete" with the reason, and the document has no effective
    revision any more."""
    return _apply(revision, "obsolete", actor=actor, proof=proof, expected_row_version=expected_row_version,
                  text=reason)


# --- what each step checks and writes ---------------------------------------------------------------------------------


def _check_submission(act: Act) -> None:
    revision = act.record
    approvers, reviewers = routed(revision, APPROVE), routed(revision, REVIEW)
    if not approvers:
        raise ValidationError("approver_ids", "Route the revision to at least one approver before submitting it.")
    _check_eligible(reviewers, REVIEW, "reviewer_ids")
    _check_eligible(approvers, APPROVE, "approver_ids")


def _submitted(act: Act) -> None:
    act.record.submitted_at = now_utc()


def _check_review(act: Act) -> None:
    if act.actor.id not in {u.id for u in outstanding(act.record)[REVIEW]}:
        raise InvalidTransition(f"You have already reviewed {act.record.audit_title()}.")


def _check_approval(act: Act) -> None:
    """Every routed reviewer has signed, this approver has not; the last approver fixes the effective date."""
    revision = act.record
    waiting = outstanding(revision)
    if waiting[REVIEW]:
        raise InvalidTransition(f"{revision.audit_title()} cannot be approved before every reviewer has signed; "
                                f"outstanding: {_names(waiting[REVIEW])}.")
    if act.actor.id not in {u.id for u in waiting[APPROVE]}:
        raise InvalidTransition(f"You have already approved {revision.audit_title()}.")
    today = today_utc()
    effective_on = act.values.get("effective_on")
    if effective_on is not None and effective_on < today:
        raise ValidationError("effective_on", f"The effective date cannot be before the approval date ({today}).")
    act.data["final"] = final = len(waiting[APPROVE]) == 1
    if final:
        effective_on = effective_on or today + timedelta(days=revision.document.training_window_days)
        for earlier in pending_revisions(revision.document):
            if earlier.effective_on is not None and effective_on < earlier.effective_on:
                raise ValidationError("effective_on", f"The effective date must be on or after "
                                                      f"{earlier.effective_on}, when the earlier revision "
                                                      f"{earlier.label} becomes effective.")
    act.data["effective_on"] = effective_on


def _effective_on_help(revision: Revision) -> str:
    default = today_utc() + timedelta(days=revision.document.training_window_days)
    return (f"Default {default.isoformat()} (approval date + training window). Never before today. Only the final "
            f"approver's date counts.")


def _approved(act: Act) -> None:
    if act.moved:
        act.record.approved_at = now_utc()
        act.record.effective_on = act.data["effective_on"]


def _assign_training(act: Act) -> None:
    revision = act.record
    if act.moved:
        # the revision becomes a training item and the training it requires is created in this same transaction:
        # either the approval and every assignment exist, or neither does
        publish.publish(revision)


def _reviewed_periodically(act: Act) -> None:
    revision = act.record
    revision.review_due_on = add_months(today_utc(), revision.document.review_interval_months)


def _check_obsolete(act: Act) -> None:
    revision = act.record
    waiting = pending_revisions(revision.document)
    if waiting:
        raise InvalidTransition(f"{revision.document.number} revision {waiting[0].label} is approved and becomes "
                                f"effective on {waiting[0].effective_on}; it supersedes {revision.label}.")


def _made_obsolete(act: Act) -> None:
    act.record.obsolete_reason = act.text
    act.record.obsoleted_at = now_utc()


def _cancel_training(act: Act) -> None:
    # nothing is left to train on: the item is retired and open training on the document cancelled, with the reason
    revision = act.record
    publish.retired(revision, reason=f"{revision.document.number} made obsolete: {act.text}")


def _not_author(verb: str) -> Rule:
    return never("author_id", "not the author (segregation of duties)",
                 lambda _revision: f"Segregation of duties: the author can never {verb} their own revision.")


def _routed_to(step: str) -> Rule:
    return Rule(f"routed to {step}", lambda revision, user: user.id in {u.id for u in routed(revision, step)},
                lambda revision, _user: f"You are not routed to {step} {revision.audit_title()}.")


def _routed_steps(revision: Revision, user: User) -> list[str]:
    return [step for step in (REVIEW, APPROVE) if user.id in {u.id for u in routed(revision, step)}]


def _reject_refusal(revision: Revision, user: User) -> str:
    steps = _routed_steps(revision, user)
    if not steps:
        return f"Only a routed reviewer or approver can reject {revision.audit_title()}."
    permission = STEP_PERMISSION[steps[0]]
    return (f"Rejecting a revision needs the permission “{PERMISSIONS[permission].label}” ({permission}), which your "
            f"roles do not grant.")


AUTHOR = only("author_id", "the author only",
              lambda revision: f"Only the author of {revision.audit_title()} ({revision.author.full_name}) can "
                               f"submit it.")
ROUTED_TO_REJECT = Rule(
    "routed to review or approve", lambda revision, user: any(
        user.can(STEP_PERMISSION[step]) for step in _routed_steps(revision, user)[:1]), _reject_refusal)
OWNER_OR_QA = Rule("the document owner or QA",
                   lambda revision, user: user.can("documents.approve") or user.id == revision.document.owner_id,
                   lambda _revision, _user: "Only the document owner or QA can record a periodic review.")

LIFECYCLE = Lifecycle(
    "document_revision", title="Document revision", model=Revision, noun="revision", labels=STATUS_LABELS,
    initial=DRAFT,
    summary=lambda revision: f"{revision.document.number} revision {revision.label} — {revision.document.title}",
    describe="""A revision is written in Draft by its author, who routes it to reviewers and approvers and signs its
    submission. Each routed reviewer signs "Reviewed"; once all have, each routed approver signs "Approved" and the
    last approver's signature approves the revision (its training is assigned in the same transaction). It takes
    effect on its effective date (`flask qms release-due`), or is held until everyone assigned has trained when the
    document is released "when trained", unless QA signs an override. QA retires the revision in force with a signed
    reason. See docs/documents.md.""",
    system=[SystemTransition((APPROVED,), EFFECTIVE, "released on its effective date by flask qms release-due"),
            SystemTransition((EFFECTIVE,), SUPERSEDED, "superseded by a newer revision taking effect"),
            SystemTransition((APPROVED,), SUPERSEDED, "superseded at once by a newer revision released with it")],
    transitions=[
        Transition("submit", "Submit for review…", (DRAFT,), IN_REVIEW, "documents.author", sig.AUTHORED,
                   rules=(AUTHOR,), task="Submitting the revision", verb="submit",
                   confirm="Sign and submit for review", check=_check_submission, effect=_submitted,
                   audit_reason="Submitted for review"),
        Transition("review", "Review…", (IN_REVIEW,), UNCHANGED, "documents.review", sig.REVIEWED, text=comment(),
                   rules=(_not_author("review"), _routed_to(REVIEW)), task="Reviewing a revision", verb="review",
                   confirm="Sign as reviewed", check=_check_review, audit_reason="Reviewed"),
        Transition("approve", "Approve…", (IN_REVIEW,), APPROVED, "documents.approve", sig.APPROVED, text=comment(),
                   rules=(_not_author("approve"), _routed_to(APPROVE)), task="Approving a revision", verb="approve",
                   confirm="Sign and approve", style="success", check=_check_approval,
                   moves=lambda act: act.data["final"], moves_when="when the last routed approver signs",
                   fields=(FormField("effective_on", "Effective date", DATE, help=_effective_on_help),),
                   effect=_approved, after=_assign_training, audit_reason="Approved"),
        Transition("reject", "Reject…", (IN_REVIEW,), DRAFT, "documents.review", sig.REJECTED,
                   text=required_comment("A comment explaining the rejection",
                                         help="Required when you reject: say what must change."),
                   rules=(ROUTED_TO_REJECT, _not_author("reject")), task="Rejecting a revision", verb="reject",
                   confirm="Sign and reject", style="outline-danger",
                   audit_reason=lambda act: f"Rejected: {act.text}"),
        Transition("periodic-review", "Record periodic review…", (EFFECTIVE,), UNCHANGED, "documents.review",
                   sig.REVIEWED,
                   text=required_comment("Periodic review outcome",
                                         help="Required: the outcome of the review, e.g. 'Still accurate; no change "
                                              "needed'. Changes go through a new revision."),
                   rules=(OWNER_OR_QA,), task="Recording a periodic review", verb="record a periodic review of",
                   confirm="Sign the periodic review", style="outline-primary", since=lambda act: act.at,
                   signature_comment=lambda act: f"Periodic review: {act.text}", effect=_reviewed_periodically,
                   audit_reason=lambda act: f"Periodic review: {act.text}"),
        Transition("release-override", "Release with open training…", (APPROVED,), UNCHANGED, "documents.approve",
                   sig.APPROVED_DESPITE_TRAINING,
                   text=justification("Justification for releasing before everyone has trained",
                                      what="A justification", min_length=4),
                   task="Overriding a held release", verb="override the held release of",
                   confirm="Sign and release with open training", style="outline-warning",
                   moves_when="released at once by the system if its effective date has come",
                   offered=release_held, check=release.check_override,
                   signature_comment=release.override_comment, effect=release.override,
                   audit_reason=lambda act: f"Release approved with open training: {act.text}"),
        Transition("obsolete", "Make obsolete…", (EFFECTIVE,), OBSOLETE, "documents.approve", sig.MADE_OBSOLETE,
                   text=justification("Reason the revision is made obsolete",
                                      what="A reason for making the document obsolete", min_length=4),
                   task="Making a document obsolete", verb="make obsolete", confirm="Sign and make obsolete",
                   style="outline-danger", check=_check_obsolete, effect=_made_obsolete, after=_cancel_training,
                   audit_reason=lambda act: f"Made obsolete: {act.text}"),
    ])
