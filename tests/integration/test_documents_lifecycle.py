"""Document control lifecycle: Draft -> In review -> Approved -> Effective -> Superseded / Obsolete, with the
signatures, segregation of duties and refusals an inspector checks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditTransaction, ReasonRequired
from core.db import db, transaction
from core.errors import InvalidTransition, NotPermitted, ValidationError
from features.support.documents import (
    TODAY,
    approve_as,
    approved_revision,
    count,
    effective_revision,
    new_document,
    new_revision,
    prove,
    reject_as,
    review_as,
    route,
    run,
    setup_people,
    signatures_of,
    submit,
    tiny_pdf,
    version,
)
from qms import rules
from qms.documents import publish, release, services
from qms.documents.models import (
    APPROVED,
    DRAFT,
    EFFECTIVE,
    IN_REVIEW,
    OBSOLETE,
    SUPERSEDED,
    Document,
    Revision,
    RevisionRoute,
)
from signatures import models as sig
from signatures.models import Signature
from signatures.services import SignatureRefused, is_valid


@pytest.fixture
def p(app, make_user):
    return setup_people(make_user)


def _status(revision: Revision) -> str:
    db.session.refresh(revision)
    return revision.status


# --- the whole lifecycle ------------------------------------------------------------------------------------------


def test_full_lifecycle_from_draft_to_effective_then_superseded_by_the_next_release(app, p):
    document = new_document(p)
    first = new_revision(p, document)
    assert (first.label, first.status) == ("1.0", DRAFT)

    route(p, first, reviewers=[p.reviewer], approvers=[p.qa])
    submit(p, first)
    assert _status(first) == IN_REVIEW and first.submitted_at is not None

    review_as(p.reviewer, first)
    assert _status(first) == IN_REVIEW
    approve_as(p.qa, first)
    assert _status(first) == APPROVED
    assert first.approved_at is not None
    assert first.effective_on == TODAY + timedelta(days=14)
    assert services.current_effective(document) is None  # approved is not yet in force

    assert run(services.release_due, first.effective_on - timedelta(days=1)) == []
    released = run(services.release_due, first.effective_on)
    assert released == [first]
    assert _status(first) == EFFECTIVE
    assert first.effective_at is not None
    assert first.review_due_on == date(2027, 3, 17)  # effective date + 24 months
    assert services.current_effective(document) == first

    second = approved_revision(p, document, major=False, content="# Purpose\n\nClean it twice.\n")
    assert second.label == "1.1"
    run(services.release_due, second.effective_on)
    assert (_status(first), _status(second)) == (SUPERSEDED, EFFECTIVE)
    assert first.superseded_at == second.effective_at
    assert services.current_effective(document) == second
    assert services.predecessor(second) == first

    meanings = [(s.meaning, s.signer_id) for s in signatures_of(first)]
    assert meanings == [(sig.AUTHORED, p.author.id), (sig.REVIEWED, p.reviewer.id), (sig.APPROVED, p.qa.id)]
    assert all(is_valid(s, first) for s in signatures_of(first))
    assert all(is_valid(s, second) for s in signatures_of(second))

    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output


def test_each_transition_is_recorded_in_the_audit_trail_with_its_reason(app, p):
    document = new_document(p)
    revision = approved_revision(p, document, effective_on=TODAY)
    run(services.release_due, TODAY)
    reasons = set(db.session.scalars(sa.select(AuditTransaction.reason)))
    assert {"Submitted for review", "Reviewed", "Approved", "Released on its effective date"} <= reasons
    assert revision.status == EFFECTIVE


def test_revision_labels_follow_the_authors_choice_of_major_or_minor(app, p):
    document = new_document(p)
    labels = []
    for major in (True, False, True):
        revision = effective_revision(p, document, major=major, content=f"# Version {len(labels)}\n")
        labels.append(revision.label)
    assert labels == ["1.0", "1.1", "2.0"]
    statuses = [r.status for r in sorted(document.revisions, key=lambda r: (r.major, r.minor))]
    assert statuses == [SUPERSEDED, SUPERSEDED, EFFECTIVE]


def test_a_first_minor_revision_is_0_1(app, p):
    document = new_document(p)
    assert new_revision(p, document, major=False).label == "0.1"


# --- segregation of duties and routing ----------------------------------------------------------------------------


def test_author_can_never_be_routed_as_reviewer_or_approver(app, p):
    # a document author also holds documents.review: the permission alone must not let them review their own work
    revision = new_revision(p, new_document(p))
    with pytest.raises(ValidationError, match="Segregation of duties") as refused:
        route(p, revision, reviewers=[p.author], approvers=[p.qa])
    assert refused.value.field == "reviewer_ids"
    with pytest.raises(ValidationError, match="Segregation of duties") as refused:
        route(p, revision, reviewers=[], approvers=[p.author])
    assert refused.value.field == "approver_ids"
    assert count(RevisionRoute) == 0


def test_author_who_is_also_qa_cannot_approve_own_revision(app, p, make_user):
    author_qa = make_user("ava.both", roles={"document_author", "qa_approver"}, full_name="Ava Both")
    document = new_document(p)
    revision = new_revision(p, document, author=author_qa)
    with pytest.raises(ValidationError, match="Segregation of duties"):
        route(p, revision, reviewers=[], approvers=[author_qa], actor=author_qa)


def test_users_without_the_permission_cannot_be_routed(app, p):
    revision = new_revision(p, new_document(p))
    with pytest.raises(ValidationError, match="documents.review") as refused:
        route(p, revision, reviewers=[p.operator], approvers=[p.qa])
    assert refused.value.field == "reviewer_ids"
    with pytest.raises(ValidationError, match="documents.approve"):
        route(p, revision, reviewers=[], approvers=[p.reviewer])  # a supervisor reviews but does not approve


def test_routing_choices_offer_only_eligible_people_and_never_the_author(app, p):
    reviewers = services.eligible_signers("review", exclude=p.author)
    approvers = services.eligible_signers("approve", exclude=p.author)
    assert p.author not in reviewers and p.operator not in reviewers
    assert {p.reviewer, p.reviewer2, p.qa, p.qa2} <= set(reviewers)
    assert set(approvers) == {p.qa, p.qa2}


def test_a_person_is_routed_to_one_step_only(app, p):
    revision = new_revision(p, new_document(p))
    with pytest.raises(ValidationError, match="not both"):
        route(p, revision, reviewers=[p.qa], approvers=[p.qa])


def test_only_the_author_routes_and_submits_the_draft(app, p):
    revision = new_revision(p, new_document(p))
    with pytest.raises(NotPermitted, match="Only the author"):
        route(p, revision, actor=p.reviewer2)
    route(p, revision)
    proof = prove(p.reviewer2)
    with pytest.raises(NotPermitted, match="Only the author"):
        run(services.submit_for_review, revision, actor=p.reviewer2, proof=proof,
            expected_row_version=version(revision))
    assert _status(revision) == DRAFT


def test_routing_can_be_changed_while_in_draft(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa])
    route(p, revision, reviewers=[p.qa2], approvers=[p.qa])
    db.session.refresh(revision)
    assert sorted((r.user_id, r.step) for r in revision.routes) == sorted([(p.qa2.id, "review"), (p.qa.id, "approve")])


def test_submission_needs_at_least_one_approver(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[])
    with pytest.raises(ValidationError, match="at least one approver") as refused:
        submit(p, revision)
    assert refused.value.field == "approver_ids"
    assert _status(revision) == DRAFT
    assert signatures_of(revision) == []


def test_a_user_not_routed_cannot_review_or_approve(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa])
    submit(p, revision)
    with pytest.raises(NotPermitted, match="not routed to review"):
        review_as(p.reviewer2, revision)
    review_as(p.reviewer, revision)
    with pytest.raises(NotPermitted, match="not routed to approve"):
        approve_as(p.qa2, revision)
    with pytest.raises(NotPermitted, match="documents.approve"):
        approve_as(p.reviewer, revision)
    assert [s.meaning for s in signatures_of(revision)] == [sig.AUTHORED, sig.REVIEWED]
    assert _status(revision) == IN_REVIEW


def test_author_cannot_review_or_approve_own_revision_even_when_routed_directly(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    with transaction(reason="forced routing, behind the service's back"):
        db.session.add(RevisionRoute(revision_id=revision.id, user_id=p.author.id, step="review"))
    with pytest.raises(NotPermitted, match="Segregation of duties"):
        review_as(p.author, revision)


def test_a_reviewer_cannot_sign_twice(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    review_as(p.reviewer, revision)
    with pytest.raises(InvalidTransition, match="already reviewed"):
        review_as(p.reviewer, revision)


# --- all required signatures before approval ---------------------------------------------------------------------


def test_approval_is_refused_while_a_reviewer_is_outstanding_naming_them(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer, p.reviewer2], approvers=[p.qa])
    submit(p, revision)
    with pytest.raises(InvalidTransition, match="outstanding: Sam Supervisor, Rita Reviewer"):
        approve_as(p.qa, revision)
    review_as(p.reviewer, revision)
    with pytest.raises(InvalidTransition, match="outstanding: Rita Reviewer") as refused:
        approve_as(p.qa, revision)
    assert "Sam Supervisor" not in refused.value.message
    assert services.outstanding(revision) == {"review": [p.reviewer2], "approve": [p.qa]}
    review_as(p.reviewer2, revision)
    approve_as(p.qa, revision)
    assert _status(revision) == APPROVED
    assert services.outstanding(revision) == {"review": [], "approve": []}


def test_revision_stays_in_review_until_the_last_approver_signs_whose_effective_date_counts(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa, p.qa2])
    submit(p, revision)
    review_as(p.reviewer, revision)
    approve_as(p.qa, revision, effective_on=TODAY + timedelta(days=3))
    assert _status(revision) == IN_REVIEW
    assert revision.effective_on is None and revision.approved_at is None
    assert services.outstanding(revision)["approve"] == [p.qa2]
    approve_as(p.qa2, revision, effective_on=TODAY + timedelta(days=30))
    assert _status(revision) == APPROVED
    assert revision.effective_on == TODAY + timedelta(days=30)


def test_reviews_without_any_reviewer_go_straight_to_approval(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[], approvers=[p.qa])
    submit(p, revision)
    approve_as(p.qa, revision)
    assert _status(revision) == APPROVED


# --- content frozen after Draft -----------------------------------------------------------------------------------


def test_content_is_frozen_once_the_revision_leaves_draft(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    with pytest.raises(InvalidTransition, match="In review"):
        run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
            content_markdown="# Changed after submission\n")
    with pytest.raises(InvalidTransition):
        route(p, revision, reviewers=[p.reviewer2])
    assert revision.content_markdown == "# Purpose\n\nClean it.\n"


def test_a_direct_orm_edit_of_submitted_content_without_a_reason_is_refused(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    with pytest.raises(ReasonRequired), transaction():
        db.session.get(Revision, revision.id).content_markdown = "# Quietly changed\n"
    db.session.expire_all()
    assert db.session.get(Revision, revision.id).content_markdown == "# Purpose\n\nClean it.\n"


def test_the_author_edits_a_draft_and_its_content_hash_follows(app, p):
    revision = new_revision(p, new_document(p))
    before = revision.content_sha256
    run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
        content_markdown="# Purpose\r\n\r\nClean it well.\r\n", change_summary="Clarified")
    db.session.refresh(revision)
    assert revision.content_markdown == "# Purpose\n\nClean it well.\n"  # line endings normalised: stable hash
    assert revision.content_sha256 == revision.computed_content_sha256() != before
    assert revision.change_summary == "Clarified"


def test_editing_a_pdf_draft_without_a_new_file_keeps_the_pdf(app, p):
    pdf = tiny_pdf()
    revision = run(services.start_revision, new_document(p), author=p.author, major=True, change_summary="First",
                   reason="New", pdf_bytes=pdf, pdf_filename="sop.pdf")
    run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
        change_summary="Typo fixed in the summary", content_markdown="")
    db.session.refresh(revision)
    assert (revision.content_format, revision.content_pdf, revision.change_summary) == \
        ("pdf", pdf, "Typo fixed in the summary")


def test_only_the_author_edits_the_draft(app, p):
    revision = new_revision(p, new_document(p))
    with pytest.raises(NotPermitted, match="Only the author"):
        run(services.update_draft, revision, actor=p.reviewer2, expected_row_version=version(revision),
            content_markdown="# Someone else's words\n")


# --- effective date -----------------------------------------------------------------------------------------------


def test_effective_date_defaults_to_approval_date_plus_the_training_window(app, p):
    document = new_document(p, training_window_days=30)
    revision = approved_revision(p, document)
    assert revision.effective_on == TODAY + timedelta(days=30)


def test_effective_date_is_never_before_the_approval_date_and_nothing_is_signed(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    review_as(p.reviewer, revision)
    with pytest.raises(ValidationError, match="before the approval date") as refused:
        approve_as(p.qa, revision, effective_on=TODAY - timedelta(days=1))
    assert refused.value.field == "effective_on"
    assert _status(revision) == IN_REVIEW
    assert sig.APPROVED not in [s.meaning for s in signatures_of(revision)]
    approve_as(p.qa, revision, effective_on=TODAY)  # the approval day itself is allowed
    assert _status(revision) == APPROVED and revision.effective_on == TODAY


def test_a_later_revision_cannot_become_effective_before_an_earlier_approved_one(app, p):
    document = new_document(p)
    approved_revision(p, document, effective_on=TODAY + timedelta(days=20))
    later = new_revision(p, document, major=False, content="# Sooner\n")
    route(p, later)
    submit(p, later)
    review_as(p.reviewer, later)
    with pytest.raises(ValidationError, match="on or after") as refused:
        approve_as(p.qa, later, effective_on=TODAY + timedelta(days=5))
    assert refused.value.field == "effective_on"


# --- release and supersession -------------------------------------------------------------------------------------


def test_release_due_is_idempotent_and_supersedes_exactly_the_previous_effective_revision(app, p):
    sop = new_document(p, "SOP-QA-001")
    other = new_document(p, "SOP-QA-002")
    sop_1 = effective_revision(p, sop)
    other_1 = effective_revision(p, other)
    sop_2 = approved_revision(p, sop, major=True, content="# Second\n")

    released = run(services.release_due, sop_2.effective_on)
    assert released == [sop_2]
    assert run(services.release_due, sop_2.effective_on) == []
    assert run(services.release_due, sop_2.effective_on + timedelta(days=400)) == []
    assert (_status(sop_1), _status(sop_2), _status(other_1)) == (SUPERSEDED, EFFECTIVE, EFFECTIVE)
    assert other_1.superseded_at is None
    effective = db.session.scalars(sa.select(Revision).where(Revision.status == EFFECTIVE)).all()
    assert sorted(r.document_id for r in effective) == sorted([sop.id, other.id])


def test_two_approved_revisions_due_together_release_in_label_order(app, p):
    document = new_document(p)
    first = effective_revision(p, document)
    day = TODAY + timedelta(days=20)
    middle = approved_revision(p, document, major=False, effective_on=day, content="# 1.1\n")
    last = approved_revision(p, document, major=False, effective_on=day, content="# 1.2\n")
    assert run(services.release_due, day) == [middle, last]
    assert [_status(r) for r in (first, middle, last)] == [SUPERSEDED, SUPERSEDED, EFFECTIVE]


def test_an_older_revision_released_after_a_newer_one_never_returns_to_force(app, p):
    # two servers may split one document's due revisions: the second to run finds the newer one already in force
    document = new_document(p)
    first = effective_revision(p, document)
    day = TODAY + timedelta(days=20)
    middle = approved_revision(p, document, major=False, effective_on=day, content="# 1.1\n")
    last = approved_revision(p, document, major=False, effective_on=day, content="# 1.2\n")
    now = clock.now_utc()
    run(release.release_revisions, [last], now, audit_reason="Released by server A")
    run(release.release_revisions, [middle], now, audit_reason="Released by server B")
    assert [_status(r) for r in (first, middle, last)] == [SUPERSEDED, SUPERSEDED, EFFECTIVE]
    assert middle.effective_at == middle.superseded_at == now
    assert run(services.release_due, day) == []


def test_a_release_on_a_later_day_catches_up_with_what_was_missed(app, p):
    document = new_document(p)
    revision = approved_revision(p, document)
    late = revision.effective_on + timedelta(days=3)
    assert run(services.release_due, late) == [revision]
    assert revision.effective_on == TODAY + timedelta(days=14)  # the approved date stands; effective_at is actual


# --- one open revision, stale pages ----------------------------------------------------------------------------------


def test_only_one_open_revision_per_document(app, p):
    document = new_document(p)
    revision = new_revision(p, document)
    with pytest.raises(InvalidTransition, match="already has an open revision"):
        new_revision(p, document)
    route(p, revision)
    submit(p, revision)
    with pytest.raises(InvalidTransition, match="already has an open revision"):
        new_revision(p, document, major=False)
    assert count(Revision) == 1


def test_a_new_revision_may_be_started_once_the_previous_one_is_approved(app, p):
    document = new_document(p)
    approved_revision(p, document)
    assert new_revision(p, document, major=False).label == "1.1"


def test_a_stale_row_version_is_refused(app, p):
    revision = new_revision(p, new_document(p))
    seen = version(revision)
    run(services.update_draft, revision, actor=p.author, expected_row_version=seen, change_summary="Edited once")
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"):
        run(services.update_draft, revision, actor=p.author, expected_row_version=seen, change_summary="Lost update")
    route(p, revision)
    proof = prove(p.author)
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"):
        run(services.submit_for_review, revision, actor=p.author, proof=proof, expected_row_version=seen)
    assert _status(revision) == DRAFT
    assert revision.change_summary == "Edited once"
    assert signatures_of(revision) == []


def test_an_approver_who_saw_an_earlier_submission_must_reload_before_signing(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[], approvers=[p.qa, p.qa2])
    submit(p, revision)
    seen = version(revision)
    reject_as(p.qa2, revision, "Section 3 is missing")
    run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
        content_markdown="# Purpose\n\n## 3. Added\n")
    submit(p, revision)
    proof = prove(p.qa)
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"):
        run(services.approve, revision, actor=p.qa, proof=proof, expected_row_version=seen)


# --- bad input ------------------------------------------------------------------------------------------------------


def test_a_duplicate_document_number_is_refused(app, p):
    new_document(p, "SOP-QA-001")
    with pytest.raises(ValidationError, match="already exists") as refused:
        new_document(p, "SOP-QA-001", title="Another")
    assert refused.value.field == "number"
    assert count(Document) == 1


def test_document_number_must_match_the_configured_format(app, p):
    with pytest.raises(ValidationError, match="numbering format") as refused:
        new_document(p, "sop 1")
    assert refused.value.field == "number"
    app.config["ATTEST_DOCUMENT_NUMBER_PATTERN"] = r"^DOC-\d{5}$"
    assert new_document(p, "DOC-00042").number == "DOC-00042"
    with pytest.raises(ValidationError, match="numbering format"):
        new_document(p, "SOP-QA-003")


@pytest.mark.parametrize(("field", "kwargs", "message"), [
    ("doc_type", {"doc_type": "MEMO"}, "Type must be one of"),
    ("title", {"title": "  "}, "Title is required"),
    ("department_id", {"department_id": 999_999}, "existing department"),
    ("owner_id", {"owner_id": 999_999}, "active user"),
    ("review_interval_months", {"review_interval_months": 0}, "from 1 to 120"),
    ("training_window_days", {"training_window_days": -1}, "from 0 to 365"),
    ("audience_job_function_ids", {"audience_job_function_ids": [999_999]}, "Unknown job function"),
])
def test_bad_document_details_are_refused_naming_the_field(app, p, field, kwargs, message):
    with pytest.raises(ValidationError, match=message) as refused:
        new_document(p, **kwargs)
    assert refused.value.field == field
    assert count(Document) == 0


def test_creating_a_document_needs_the_author_permission(app, p):
    with pytest.raises(NotPermitted, match="documents.author"):
        run(services.create_document, number="SOP-QA-009", title="X", doc_type="SOP",
            department_id=p.department_id, owner_id=p.qa.id, actor=p.qa)


def test_pdf_content_is_stored_with_its_hash(app, p):
    import hashlib

    pdf = tiny_pdf("Procedure with hash")
    revision = run(services.start_revision, new_document(p), author=p.author, major=True, change_summary="First",
                   reason="New", pdf_bytes=pdf, pdf_filename="C:\\Users\\ada\\sop.pdf")
    assert (revision.content_format, revision.content_filename) == ("pdf", "sop.pdf")
    assert revision.content_sha256 == hashlib.sha256(pdf).hexdigest()
    assert revision.content_markdown is None


def test_a_file_that_is_not_a_pdf_is_refused_naming_the_field(app, p):
    document = new_document(p)
    with pytest.raises(ValidationError, match="not a PDF") as refused:
        run(services.start_revision, document, author=p.author, major=True, change_summary="First", reason="New",
            pdf_bytes=b"MZ\x90\x00 an executable", pdf_filename="sop.pdf")
    assert refused.value.field == "content_pdf"
    assert count(Revision) == 0


def test_a_pdf_over_the_size_limit_is_refused_naming_the_field(app, p):
    app.config["ATTEST_MAX_UPLOAD_MB"] = 1
    document = new_document(p)
    with pytest.raises(ValidationError, match="the limit is 1 MB") as refused:
        run(services.start_revision, document, author=p.author, major=True, change_summary="First", reason="New",
            pdf_bytes=b"%PDF-1.7\n" + b"x" * (1024 * 1024), pdf_filename="big.pdf")
    assert refused.value.field == "content_pdf"
    assert count(Revision) == 0


def test_markdown_content_is_required_and_limited(app, p):
    document = new_document(p)
    with pytest.raises(ValidationError, match="Content is required") as refused:
        new_revision(p, document, content="   \n")
    assert refused.value.field == "content_markdown"
    with pytest.raises(ValidationError, match="at most 1,000,000 characters"):
        new_revision(p, document, content="x" * 1_000_001)
    with pytest.raises(ValidationError, match="not both"):
        run(services.start_revision, document, author=p.author, major=True, change_summary="First", reason="New",
            content_markdown="# Text", pdf_bytes=b"%PDF-1.7\n")


def test_change_summary_and_reason_are_required(app, p):
    document = new_document(p)
    with pytest.raises(ValidationError) as refused:
        run(services.start_revision, document, author=p.author, major=True, change_summary="", reason="New",
            content_markdown="# Text")
    assert refused.value.field == "change_summary"
    with pytest.raises(ValidationError) as refused:
        run(services.start_revision, document, author=p.author, major=True, change_summary="First", reason=" ",
            content_markdown="# Text")
    assert refused.value.field == "reason"


def test_starting_a_revision_needs_the_author_permission(app, p):
    with pytest.raises(NotPermitted, match="documents.author"):
        new_revision(p, new_document(p), author=p.qa)


# --- rejection ----------------------------------------------------------------------------------------------------


def test_rejection_returns_to_draft_with_the_comment_on_the_rejected_signature(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    with pytest.raises(ValidationError, match="comment") as refused:
        reject_as(p.reviewer, revision, "   ")
    assert refused.value.field == "comment"
    reject_as(p.reviewer, revision, "Step 4 contradicts the cleaning validation")
    assert _status(revision) == DRAFT
    rejected = signatures_of(revision)[-1]
    assert (rejected.meaning, rejected.signer_id) == (sig.REJECTED, p.reviewer.id)
    assert rejected.comment == "Step 4 contradicts the cleaning validation"
    # editable again
    run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
        content_markdown="# Purpose\n\nStep 4 fixed.\n")
    assert revision.content_markdown == "# Purpose\n\nStep 4 fixed.\n"


def test_a_resubmitted_revision_needs_fresh_signatures_from_everyone(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision, reviewers=[p.reviewer], approvers=[p.qa, p.qa2])
    submit(p, revision)
    review_as(p.reviewer, revision)
    approve_as(p.qa, revision)
    reject_as(p.qa2, revision, "Wrong torque value")
    run(services.update_draft, revision, actor=p.author, expected_row_version=version(revision),
        content_markdown="# Purpose\n\nTorque 12 Nm.\n")
    submit(p, revision)
    assert _status(revision) == IN_REVIEW
    assert services.outstanding(revision) == {"review": [p.reviewer], "approve": [p.qa, p.qa2]}
    with pytest.raises(InvalidTransition, match="outstanding: Sam Supervisor"):
        approve_as(p.qa, revision)
    review_as(p.reviewer, revision)
    approve_as(p.qa, revision)
    assert _status(revision) == IN_REVIEW  # Quincy's earlier rejection does not count as anything
    approve_as(p.qa2, revision)
    assert _status(revision) == APPROVED

    signatures = signatures_of(revision)
    assert [s.meaning for s in signatures] == [sig.AUTHORED, sig.REVIEWED, sig.APPROVED, sig.REJECTED,
                                               sig.AUTHORED, sig.REVIEWED, sig.APPROVED, sig.APPROVED]
    assert [s.record_version for s in signatures[4:]] == ["1.0 submission 2"] * 4
    assert all(is_valid(s, revision) for s in signatures[4:])  # the submission that was approved
    assert not any(is_valid(s, revision) for s in signatures[:4])  # the earlier content, stays on record


def test_only_a_routed_signer_can_reject(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    submit(p, revision)
    with pytest.raises(NotPermitted, match="routed reviewer or approver"):
        reject_as(p.qa2, revision, "Not mine to judge")
    assert _status(revision) == IN_REVIEW


def test_a_draft_cannot_be_reviewed_approved_or_rejected(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    with pytest.raises(InvalidTransition, match="Draft"):
        review_as(p.reviewer, revision)
    with pytest.raises(InvalidTransition, match="Draft"):
        approve_as(p.qa, revision)
    with pytest.raises(InvalidTransition, match="Draft"):
        reject_as(p.qa, revision, "No")


# --- signature binding ----------------------------------------------------------------------------------------------


def test_a_signature_becomes_invalid_after_a_direct_sql_change_of_the_content(app, p):
    revision = effective_revision(p, new_document(p))
    assert all(is_valid(s, revision) for s in signatures_of(revision))
    revision_id = revision.id  # read now: a lazy load after the rollback would open a snapshot older than the edit
    db.session.rollback()
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE qms_document_revision SET content_markdown = :c WHERE id = :id"),
                     {"c": "# Purpose\n\nSkip cleaning.\n", "id": revision_id})
    db.session.expire_all()
    revision = db.session.get(Revision, revision_id)
    assert signatures_of(revision)
    assert not any(is_valid(s, revision) for s in signatures_of(revision))


def test_a_failed_signature_writes_nothing(app, p):
    revision = new_revision(p, new_document(p))
    route(p, revision)
    proof = prove(p.reviewer)  # someone else's proof cannot be used for the author's signature
    with pytest.raises(SignatureRefused):
        run(services.submit_for_review, revision, actor=p.author, proof=proof,
            expected_row_version=version(revision))
    assert _status(revision) == DRAFT
    assert count(Signature) == 0


# --- obsolete -------------------------------------------------------------------------------------------------------


def test_qa_makes_an_effective_revision_obsolete_with_a_signed_reason(app, p):
    revision = effective_revision(p, new_document(p))
    proof = prove(p.qa2)
    with pytest.raises(ValidationError) as refused:
        run(services.make_obsolete, revision, actor=p.qa2, proof=proof, expected_row_version=version(revision),
            reason="")
    assert refused.value.field == "reason"
    proof = prove(p.qa2)
    run(services.make_obsolete, revision, actor=p.qa2, proof=proof, expected_row_version=version(revision),
        reason="Mixer decommissioned")
    assert _status(revision) == OBSOLETE
    assert revision.obsolete_reason == "Mixer decommissioned" and revision.obsoleted_at is not None
    last = signatures_of(revision)[-1]
    assert (last.meaning, last.signer_id, last.comment) == (sig.MADE_OBSOLETE, p.qa2.id, "Mixer decommissioned")
    assert services.current_effective(revision.document) is None
    reasons = db.session.scalars(sa.select(AuditTransaction.reason)).all()
    assert "Made obsolete: Mixer decommissioned" in reasons


def test_only_qa_can_make_a_revision_obsolete_and_only_when_effective(app, p):
    document = new_document(p)
    revision = approved_revision(p, document)
    proof = prove(p.qa2)
    with pytest.raises(InvalidTransition, match="Approved"):
        run(services.make_obsolete, revision, actor=p.qa2, proof=proof, expected_row_version=version(revision),
            reason="Too early")
    run(services.release_due, revision.effective_on)
    proof = prove(p.reviewer)
    with pytest.raises(NotPermitted, match="documents.approve"):
        run(services.make_obsolete, revision, actor=p.reviewer, proof=proof,
            expected_row_version=version(revision), reason="Not allowed")
    assert _status(revision) == EFFECTIVE


def test_a_revision_cannot_be_made_obsolete_while_its_successor_awaits_its_effective_date(app, p):
    document = new_document(p)
    first = effective_revision(p, document)
    approved_revision(p, document, major=False, content="# Next\n")
    proof = prove(p.qa2)
    with pytest.raises(InvalidTransition, match="supersedes 1.0"):
        run(services.make_obsolete, first, actor=p.qa2, proof=proof, expected_row_version=version(first),
            reason="Replaced")


# --- periodic review ------------------------------------------------------------------------------------------------


def test_reviews_due_lists_overdue_periodic_reviews_by_due_date(app, p):
    yearly = new_document(p, "SOP-QA-001", review_interval_months=12)
    biennial = new_document(p, "SOP-QA-002", review_interval_months=24)
    monthly = new_document(p, "SOP-QA-003", review_interval_months=1)
    revisions = {d.number: effective_revision(p, d) for d in (yearly, biennial, monthly)}
    assert revisions["SOP-QA-001"].review_due_on == TODAY.replace(year=TODAY.year + 1)
    assert services.reviews_due(TODAY) == []
    in_13_months = date(TODAY.year + 1, TODAY.month + 1, TODAY.day)
    assert services.reviews_due(in_13_months) == [revisions["SOP-QA-003"], revisions["SOP-QA-001"]]
    assert services.reviews_due(date(TODAY.year + 3, 1, 1)) == [revisions["SOP-QA-003"], revisions["SOP-QA-001"],
                                                                 revisions["SOP-QA-002"]]


def test_a_superseded_revision_has_no_review_due(app, p):
    document = new_document(p, review_interval_months=1)
    effective_revision(p, document)
    second = effective_revision(p, document, major=False, content="# 1.1\n")
    assert services.reviews_due(date(2030, 1, 1)) == [second]


def test_periodic_review_months_end_on_the_last_day_of_a_shorter_month():
    assert rules.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert rules.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert rules.add_months(date(2025, 11, 15), 3) == date(2026, 2, 15)
    assert rules.add_months(date(2025, 3, 3), 24) == date(2027, 3, 3)


# --- document details ---------------------------------------------------------------------------------------------


def test_document_details_change_only_with_a_reason(app, p):
    document = new_document(p)
    with pytest.raises(ValidationError, match="reason") as refused:
        run(services.update_document_metadata, document, actor=p.author, owner_id=p.reviewer2.id)
    assert refused.value.field == "reason"
    run(services.update_document_metadata, document, actor=p.author, owner_id=p.reviewer2.id,
        training_window_days=7, audience_job_function_ids=[], audit_reason="Ownership moved to Rita")
    db.session.refresh(document)
    assert (document.owner_id, document.training_window_days, publish.audience_ids(document)) == (
        p.reviewer2.id, 7, [])
    assert "Ownership moved to Rita" in db.session.scalars(sa.select(AuditTransaction.reason)).all()


def test_a_new_review_interval_moves_the_periodic_review_of_the_revision_in_force(app, p):
    document = new_document(p)
    revision = effective_revision(p, document)
    run(services.update_document_metadata, document, actor=p.qa, review_interval_months=6,
        audit_reason="Higher risk after deviation DEV-12")
    assert _status(revision) == EFFECTIVE
    assert revision.review_due_on == rules.add_months(revision.effective_on, 6)
    assert all(is_valid(s, revision) for s in signatures_of(revision))  # details are not signed content


def test_an_operator_cannot_change_document_details(app, p):
    document = new_document(p)
    with pytest.raises(NotPermitted):
        run(services.update_document_metadata, document, actor=p.operator, owner_id=p.operator.id,
            audit_reason="Trying")


# --- the scheduler's commands ---------------------------------------------------------------------------------------


def test_cli_release_due_prints_each_release_and_is_idempotent(app, p):
    document = new_document(p)
    first = effective_revision(p, document)
    second = approved_revision(p, document, major=True, content="# Two\n")
    runner = app.test_cli_runner()
    day = second.effective_on.isoformat()
    early = runner.invoke(args=["qms", "release-due", "--date", (second.effective_on - timedelta(days=1)).isoformat()])
    assert early.exit_code == 0, early.output
    assert "released 0 revisions" in early.output

    result = runner.invoke(args=["qms", "release-due", "--date", day])
    assert result.exit_code == 0, result.output
    assert f"SOP-QA-001 revision 2.0 effective from {day}, supersedes 1.0" in result.output
    assert "released 1 revision due on or before" in result.output
    db.session.expire_all()
    assert (db.session.get(Revision, first.id).status, db.session.get(Revision, second.id).status) == \
        (SUPERSEDED, EFFECTIVE)
    tx = db.session.scalars(sa.select(AuditTransaction).order_by(AuditTransaction.id.desc())).first()
    assert tx.channel == "cli" and tx.reason == "Released on its effective date"

    again = runner.invoke(args=["qms", "release-due", "--date", day])
    assert again.exit_code == 0, again.output
    assert "released 0 revisions" in again.output
    verify = runner.invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output


def test_cli_release_due_refuses_a_malformed_date(app):
    result = app.test_cli_runner().invoke(args=["qms", "release-due", "--date", "17/03/2025"])
    assert result.exit_code != 0
    assert "YYYY-MM-DD" in result.output or "17/03/2025" in result.output


def test_cli_reviews_due_lists_overdue_reviews(app, p):
    revision = effective_revision(p, new_document(p, review_interval_months=1))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["qms", "reviews-due", "--date", (revision.review_due_on + timedelta(days=5))
                                 .isoformat()])
    assert result.exit_code == 0, result.output
    assert f"{revision.review_due_on}  SOP-QA-001 revision 1.0  Cleaning of the mixer  (5 days overdue)" \
        in result.output
    assert "1 periodic review due" in result.output
    none = runner.invoke(args=["qms", "reviews-due", "--date", TODAY.isoformat()])
    assert "0 periodic reviews due" in none.output
