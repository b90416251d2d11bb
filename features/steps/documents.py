"""OQ steps for document control: the revision lifecycle, routing, frozen content, effective dates, obsolescence.

They drive the document services the pages call, one unit of work per step as a request would."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import clock
from core.db import db
from features.steps.access import account
from features.support.inspection import scalar_count
from qms.documents import services
from qms.documents.models import EFFECTIVE, Revision, RevisionRoute
from qms.documents.publish import item_of, subject_of
from signatures.models import Signature
from training.models import TrainingAssignment


def revision(ctx, label: str) -> Revision:
    major, minor = (int(x) for x in label.split("."))
    found = db.session.scalar(sa.select(Revision).where(Revision.document_id == ctx.document.id,
                                                        Revision.major == major, Revision.minor == minor))
    assert found is not None, f"{ctx.document.number} has no revision {label}"
    db.session.refresh(found)
    return found


def attempt(ctx, action, *args, **kwargs) -> None:
    from features.support.documents import run

    try:
        run(action, *args, **kwargs)
        ctx.refusal = None
    except Exception as exc:  # the refusal is what the step observes
        ctx.refusal = str(getattr(exc, "message", exc))
    db.session.rollback()
    db.session.expire_all()


def signatures(rev: Revision, meaning: str | None = None) -> list[Signature]:
    stmt = sa.select(Signature).where(Signature.record_type == rev.signable_type, Signature.record_id == rev.id)
    if meaning:
        stmt = stmt.where(Signature.meaning == meaning)
    return list(db.session.scalars(stmt.order_by(Signature.id)))


@given(parsers.parse("revision {label} of the document is a draft"))
def draft(ctx, evidence, label):
    from features.support.documents import new_revision

    ctx.revision = new_revision(ctx.p, ctx.document)
    assert ctx.revision.label == label
    evidence.record("Revision", f"{ctx.document.number} rev {label}: draft by Ada Author")


@when(parsers.parse('the author writes revision {label}, routes it to "{reviewer}" for review and "{approver}" for '
                    'approval and submits it'))
def write_route_submit(ctx, evidence, label, reviewer, approver):
    from features.support.documents import new_revision, route, submit

    rev = new_revision(ctx.p, ctx.document, content="# Purpose\n\nClean it with detergent A.\n")
    route(ctx.p, rev, reviewers=[account(ctx, reviewer)], approvers=[account(ctx, approver)])
    submit(ctx.p, rev)
    assert rev.label == label
    evidence.record("Revision", f"{ctx.document.number} rev {label} submitted")


@then(parsers.parse('revision {label} is "{status}" with the signature "{meaning}" of "{name}"'))
def status_with_signature(ctx, evidence, label, status, meaning, name):
    rev = revision(ctx, label)
    found = [(s.printed_name, s.meaning) for s in signatures(rev)]
    evidence.actual(f"rev {label}: {rev.status_label}; signatures {found}")
    assert rev.status_label == status and (name, meaning) in found


@when(parsers.parse('"{username}" tries to approve revision {label}'))
@when(parsers.parse('"{username}" tries to approve the draft revision {label}'))
def try_approve(ctx, evidence, username, label):
    from features.support.documents import prove, version

    user = account(ctx, username)
    rev = revision(ctx, label)
    attempt(ctx, services.approve, rev, actor=user, proof=prove(user), expected_row_version=version(rev))


@then(parsers.parse('it is refused with "{message}" and revision {label} is still "{status}"'))
def refused_status(ctx, evidence, message, label, status):
    rev = revision(ctx, label)
    evidence.actual(f"refused: {ctx.refusal}; rev {label} is {rev.status_label}")
    assert ctx.refusal is not None and message in ctx.refusal and rev.status_label == status


@when(parsers.parse('"{username}" reviews revision {label}'))
def reviews(ctx, evidence, username, label):
    from features.support.documents import review_as

    review_as(account(ctx, username), revision(ctx, label))
    evidence.record("Signature", f"{username}: Reviewed rev {label}")


@when(parsers.parse('"{username}" approves revision {label} effective today'))
def approves_today(ctx, evidence, username, label):
    from features.support.documents import approve_as

    approve_as(account(ctx, username), revision(ctx, label), effective_on=clock.now_utc().date())
    evidence.record("Signature", f"{username}: Approved rev {label}, effective {clock.now_utc().date()}")


@then(parsers.parse('revision {label} is "{status}"'))
def revision_is(ctx, evidence, label, status):
    rev = revision(ctx, label)
    evidence.actual(f"{rev.audit_title()}: {rev.status_label}")
    assert rev.status_label == status


@when("the daily release runs")
def daily_release(ctx, evidence):
    from features.support.documents import run

    released = run(services.release_due, clock.now_utc().date())
    evidence.record("Released", ", ".join(r.audit_title() for r in released) or "nothing")


@then(parsers.parse('revision {new} is "{status}" and revision {old} is "{old_status}"'))
def two_statuses(ctx, evidence, new, status, old, old_status):
    a, b = revision(ctx, new), revision(ctx, old)
    evidence.actual(f"rev {new}: {a.status_label} (effective at {a.effective_at}); rev {old}: {b.status_label} "
                    f"(superseded at {b.superseded_at})")
    assert a.status_label == status and b.status_label == old_status and a.effective_at == b.superseded_at


@then(parsers.parse('exactly one revision of "{number}" is effective'))
def one_effective(ctx, evidence, number):
    n = scalar_count(Revision, Revision.document_id == ctx.document.id, Revision.status == EFFECTIVE)
    evidence.actual(f"{n} effective revision(s) of {number}")
    assert n == 1


@when(parsers.parse("the author routes revision {label} to himself for approval"))
def route_self(ctx, evidence, label):
    attempt(ctx, services.set_routing, revision(ctx, label), actor=ctx.p.author, reviewer_ids=[],
            approver_ids=[ctx.p.author.id])


@then(parsers.parse('it is refused with "{message}" and revision {label} has no routing'))
def refused_no_routing(ctx, evidence, message, label):
    n = scalar_count(RevisionRoute, RevisionRoute.revision_id == revision(ctx, label).id)
    evidence.actual(f"refused: {ctx.refusal}; routes: {n}")
    assert ctx.refusal and message in ctx.refusal and n == 0


@when(parsers.parse('"{username}" approves revision {label} effective yesterday'))
def approve_yesterday(ctx, evidence, username, label):
    from features.support.documents import prove, version

    user, rev = account(ctx, username), revision(ctx, label)
    attempt(ctx, services.approve, rev, actor=user, proof=prove(user), expected_row_version=version(rev),
            effective_on=clock.now_utc().date() - timedelta(days=1))


@then(parsers.parse('revision {label} carries no "{meaning}" signature and no training was assigned'))
def nothing_signed(ctx, evidence, label, meaning):
    rev = revision(ctx, label)
    signed = signatures(rev, meaning)
    item = item_of(rev)  # a revision becomes a training item only at its final approval
    assigned = scalar_count(TrainingAssignment, TrainingAssignment.item_id == item.id) if item is not None else 0
    evidence.actual(f"'{meaning}' signatures: {len(signed)}; training item: {item.title if item else 'none'}; "
                    f"training assignments: {assigned}")
    assert signed == [] and item is None and assigned == 0


@when(parsers.parse("the author edits the content of revision {label}"))
def edit_content(ctx, evidence, label):
    from features.support.documents import version

    rev = revision(ctx, label)
    ctx.content = rev.content_markdown
    attempt(ctx, services.update_draft, rev, actor=ctx.p.author, expected_row_version=version(rev),
            content_markdown="# Changed after submission\n")


@then(parsers.parse('it is refused with "{message}" and the content of revision {label} is unchanged'))
def content_unchanged(ctx, evidence, message, label):
    rev = revision(ctx, label)
    same = rev.content_markdown == ctx.content
    evidence.actual(f"refused: {ctx.refusal}; content {'unchanged' if same else 'CHANGED'}")
    assert ctx.refusal and message in ctx.refusal and rev.content_markdown == ctx.content


@when(parsers.parse("the content of revision {label} is changed through the application without a reason for "
                    "change"))
def orm_edit(ctx, evidence, label):
    from core.db import transaction

    rev = revision(ctx, label)
    ctx.content = rev.content_markdown

    def change():
        with transaction():
            db.session.get(Revision, rev.id).content_markdown = "# Quietly changed\n"

    try:
        change()
        ctx.refusal = None
    except Exception as exc:  # the refusal is what the step observes
        ctx.refusal = str(exc)
    db.session.expire_all()


@then(parsers.parse("revision {label} records the SHA-256 of its content"))
def content_hash_recorded(ctx, evidence, label):
    rev = revision(ctx, label)
    evidence.actual(f"stored SHA-256 {rev.content_sha256}; computed {rev.computed_content_sha256()}")
    assert rev.content_sha256 == rev.computed_content_sha256() and len(rev.content_sha256) == 64


@when(parsers.parse('"{username}" rejects revision {label} with the comment "{comment}"'))
def reject(ctx, evidence, username, label, comment):
    from features.support.documents import reject_as

    reject_as(account(ctx, username), revision(ctx, label), comment)


@then(parsers.parse('revision {label} is "{status}" and the rejection carries the comment "{comment}"'))
def rejected(ctx, evidence, label, status, comment):
    rev = revision(ctx, label)
    rejection = signatures(rev, "Rejected")
    evidence.actual(f"rev {label}: {rev.status_label}; rejections {[(s.printed_name, s.comment) for s in rejection]}")
    assert rev.status_label == status and [s.comment for s in rejection] == [comment]


@when(parsers.parse("the author resubmits revision {label}"))
def resubmit(ctx, evidence, label):
    from features.support.documents import submit

    submit(ctx.p, revision(ctx, label))


@then(parsers.parse('"{approver}" cannot approve revision {label} until "{reviewer}" has reviewed it again'))
def needs_review_again(ctx, evidence, approver, label, reviewer):
    try_approve(ctx, evidence, approver, label)
    first = ctx.refusal
    reviews(ctx, evidence, reviewer, label)
    try_approve(ctx, evidence, approver, label)
    evidence.actual(f"before the new review: refused ({first}); after it: "
                    f"{'approved' if ctx.refusal is None else ctx.refusal}")
    assert first and "outstanding" in first and ctx.refusal is None
    assert revision(ctx, label).status_label.startswith("Approved")


@given(parsers.parse("the author has the edit page of revision {label} open"))
def page_open(ctx, evidence, label):
    from features.support.documents import route, version

    rev = revision(ctx, label)
    route(ctx.p, rev)
    ctx.seen = version(rev)
    evidence.record("Row version shown", ctx.seen)


@when("the revision is changed by another save")
def another_save(ctx, evidence):
    from features.support.documents import run, version

    run(services.update_draft, ctx.revision, actor=ctx.p.author, expected_row_version=version(ctx.revision),
        change_summary="Edited in another tab")
    evidence.record("Row version now", version(ctx.revision))


@when(parsers.parse("the author submits revision {label} from the page he had open"))
def submit_stale(ctx, evidence, label):
    from features.support.documents import prove

    attempt(ctx, services.submit_for_review, revision(ctx, label), actor=ctx.p.author, proof=prove(ctx.p.author),
            expected_row_version=ctx.seen)


@given(parsers.parse('revision {label} of the document is approved with training assigned to "{username}"'))
def approved_with_training(ctx, evidence, label, username):
    from features.support.documents import approved_revision

    rev = approved_revision(ctx.p, ctx.document, effective_on=clock.now_utc().date())
    assert rev.label == label
    n = scalar_count(TrainingAssignment, TrainingAssignment.item_id == item_of(rev).id,
                     TrainingAssignment.user_id == account(ctx, username).id)
    assert n == 1
    evidence.record("Revision", f"rev {label} approved; {username} assigned")


@when(parsers.parse('"{username}" makes revision {label} obsolete without a reason'))
@when(parsers.parse('"{username}" makes revision {label} obsolete with the reason "{reason}"'))
def make_obsolete(ctx, evidence, username, label, reason=""):
    from features.support.documents import prove, version

    user, rev = account(ctx, username), revision(ctx, label)
    attempt(ctx, services.make_obsolete, rev, actor=user, proof=prove(user), expected_row_version=version(rev),
            reason=reason)
    ctx.obsolete_reason = reason


@then(parsers.parse('revision {label} is "{status}" with a "{meaning}" signature carrying "{comment}"'))
def obsolete(ctx, evidence, label, status, meaning, comment):
    rev = revision(ctx, label)
    signed = signatures(rev, meaning)
    evidence.actual(f"rev {label}: {rev.status_label}, reason '{rev.obsolete_reason}'; '{meaning}' signatures "
                    f"{[(s.printed_name, s.comment) for s in signed]}")
    assert rev.status_label == status and [s.comment for s in signed] == [comment]


@then(parsers.parse('the open training of "{username}" on the document is cancelled naming the reason'))
def training_cancelled(ctx, evidence, username):
    rows = list(db.session.scalars(sa.select(TrainingAssignment).where(
        TrainingAssignment.user_id == account(ctx, username).id,
        TrainingAssignment.subject_id == subject_of(ctx.document).id).order_by(TrainingAssignment.id)))
    evidence.actual("; ".join(f"rev {r.item.version_label}: {r.status} ({r.closed_reason})" for r in rows))
    assert rows and all(r.status != "open" for r in rows)
    assert any(r.status == "cancelled" and ctx.obsolete_reason in (r.closed_reason or "") for r in rows)


@then(parsers.parse("revision {label} is still readable with its history"))
def readable(ctx, evidence, label):
    from core.audit.views import record_history

    rev = revision(ctx, label)
    history = record_history(Revision, rev.id)
    evidence.actual(f"{rev.audit_title()} readable ({len(rev.content_markdown)} characters), {len(history)} audited "
                    f"changes, last reason '{history[-1].tx.reason}'")
    assert rev.content_markdown and history[-1].tx.reason == f"Made obsolete: {ctx.obsolete_reason}"
