"""PQ steps: the training process end to end at realistic volume, each stage timed (evidence "duration_s").

The operators are created in bulk through core.bulk (audited), as the HR import would; everything after that goes
through the same use cases the pages call: the approval fans out through the training engine, and each operator's
read-and-sign is a real ceremony (open, password and TOTP, signature). The pages use three requests for it; here each
operator's ceremony is one unit of work attributed to that operator, which keeps 1,000 of them within the time budget
(the three-request path is verified by the OQ read-and-sign feature)."""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from datetime import timedelta

import pyotp
import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import audit, bulk, clock
from core.auth import passwords
from core.auth.models import User, UserRole, UserSecurity
from core.db import db, transaction
from features.steps.access import account
from features.steps.documents import revision
from features.steps.quality import fresh, report, signed
from qms.capa import services as capa_services
from qms.capa.services import ActionInput
from qms.deviations import services as deviations
from qms.documents import services
from qms.documents.publish import item_of, subject_of
from signatures import services as signing
from signatures.models import Signature
from testkit.plugin import PASSWORD
from training.models import COMPLETED, OPEN, SOURCE_CAPA_ACTION, TrainingAssignment, UserJobFunction
from training.read_and_sign import services as read_and_sign


@contextmanager
def timed(evidence, stage: str):
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    evidence.record("duration_s", f"{seconds:.2f}")
    evidence.record("stage", stage)


@given(parsers.parse('{n:d} operators with an enrolled authenticator hold the job function "OP-MIX"'))
def many_operators(ctx, evidence, n):
    now = clock.now_utc()
    with timed(evidence, f"{n} operator accounts created in bulk"), transaction(reason="HR import of the plant"):
        ids = bulk.bulk_insert(User, [{"username": f"op{i:04d}", "full_name": f"Operator {i:04d}", "active": True,
                                       "email": f"op{i:04d}@example.com", "created_at": now} for i in range(1, n + 1)])
        digest = passwords.hash_password(PASSWORD)
        db.session.execute(sa.insert(UserSecurity), [
            {"user_id": uid, "password_hash": digest, "must_change_password": False, "password_changed_at": now,
             "failed_attempts": 0, "totp_secret": pyotp.random_base32(), "totp_enrolled_at": now,
             "session_nonce": secrets.token_hex(16)} for uid in ids])
        bulk.bulk_insert(UserRole, [{"user_id": uid, "role": "operator"} for uid in ids])
        bulk.bulk_insert(UserJobFunction, [{"user_id": uid, "job_function_id": ctx.p.job_function_id,
                                            "valid_from": now.date() - timedelta(days=30)} for uid in ids])
    ctx.operator_ids = ids
    evidence.record("Operators", f"{len(ids)} (op0001 … op{n:04d}), role operator, TOTP enrolled, OP-MIX")


@when(parsers.parse('"{username}" approves revision {label}, effective in {days:d} days'))
def approve(ctx, evidence, username, label, days):
    from features.support.documents import prove, run, version

    user, rev = account(ctx, username), revision(ctx, label)
    proof = prove(user)
    with timed(evidence, "final approval with the training fan-out"):
        run(services.approve, rev, actor=user, proof=proof, expected_row_version=version(rev),
            effective_on=clock.now_utc().date() + timedelta(days=days))


@then(parsers.parse("{n:d} open assignments on revision {label} were created in the approval's transaction"))
def fanned_out(ctx, evidence, n, label):
    from sqlalchemy_continuum import version_class

    rev = revision(ctx, label)
    vcls, svcls = version_class(TrainingAssignment), version_class(Signature)
    approval_tx = db.session.scalar(sa.select(svcls.transaction_id).where(svcls.meaning == "Approved",
                                                                          svcls.record_id == rev.id))
    rows = db.session.execute(sa.select(TrainingAssignment.status, sa.func.count()).where(
        TrainingAssignment.item_id == item_of(rev).id).group_by(TrainingAssignment.status)).all()
    versions = db.session.scalar(sa.select(sa.func.count()).select_from(vcls).where(
        vcls.transaction_id == approval_tx))
    evidence.actual(f"assignments on rev {label}: {dict(rows)}; {versions} version rows in the approval's "
                    f"transaction {approval_tx}")
    assert dict(rows) == {OPEN: n}
    assert versions == sum(c for _s, c in rows)


@when(parsers.parse('every operator opens revision {label} and signs it "Read and understood" with password and code'))
def everyone_signs(ctx, evidence, label):
    from testkit.plugin import totp_code

    rev = revision(ctx, label)
    rows = db.session.execute(sa.select(TrainingAssignment.id, TrainingAssignment.user_id).where(
        TrainingAssignment.item_id == item_of(rev).id, TrainingAssignment.user_id.in_(ctx.operator_ids))
        .order_by(TrainingAssignment.id)).all()
    with timed(evidence, f"{len(rows)} read-and-sign ceremonies"):
        for assignment_id, user_id in rows:
            user = db.session.get(User, user_id)
            assignment = db.session.get(TrainingAssignment, assignment_id)
            # one unit of work per operator, attributed to that operator: open, re-authenticate, sign
            with transaction(), audit.acting_as(user):
                read_and_sign.mark_opened(assignment, user)
                proof = signing.authenticate(user, password=PASSWORD, totp_code=totp_code(user))
                assert proof is not None, f"{user.username} could not authenticate"
                signature = read_and_sign.complete(assignment, user=user, proof=proof,
                                                   expected_version=str(rev.row_version))
            for done in (signature, assignment, user.security, user):  # keep the session small, as a request does
                db.session.expunge(done)
    evidence.record("Ceremonies", len(rows))


@then(parsers.parse("all {n:d} assignments are completed, each by a valid signature of its own operator"))
def all_completed(ctx, evidence, n):
    rev = revision(ctx, "1.0")
    rows = db.session.execute(sa.select(TrainingAssignment.user_id, TrainingAssignment.status, Signature)
                              .join(Signature, Signature.id == TrainingAssignment.signature_id)
                              .where(TrainingAssignment.item_id == item_of(rev).id,
                                     TrainingAssignment.user_id.in_(ctx.operator_ids))).all()
    valid = sum(1 for uid, status, s in rows if status == COMPLETED and s.signer_id == uid
                and s.meaning == "Read and understood" and signing.is_valid(s, rev))
    methods = {s.auth_method for _u, _st, s in rows}
    evidence.actual(f"{len(rows)} completed assignments, {valid} with a valid signature of their own operator, "
                    f"authenticated by {sorted(methods)}")
    assert len(rows) == valid == n and methods == {"password+totp"}


@when("the daily release runs on the effective date")
def release_on_date(ctx, evidence):
    from features.support.documents import run

    rev = revision(ctx, "1.0")
    clock.freeze(clock.now_utc().replace(hour=6) + timedelta(days=(rev.effective_on - clock.now_utc().date()).days))
    with timed(evidence, "release on the effective date"):
        released = run(services.release_due, clock.now_utc().date())
    evidence.record("Released", ", ".join(r.audit_title() for r in released))


@then(parsers.parse("revision {label} is effective and all {n:d} operators are qualified on it"))
def all_qualified(ctx, evidence, label, n):
    from training.qualification.services import qualify_many

    rev = revision(ctx, label)
    people = list(db.session.scalars(sa.select(User).where(User.id.in_(ctx.operator_ids))))
    with timed(evidence, f"qualification of {len(people)} operators"):
        answers = qualify_many([(u, subject_of(rev.document)) for u in people])
    qualified = sum(1 for a in answers.values() if a.qualified and a.trained.source_id == rev.id)
    evidence.actual(f"rev {label}: {rev.status_label}; {qualified} of {len(people)} operators qualified on it")
    assert rev.status_label == "Effective" and qualified == len(people) == n


@when(parsers.parse('"{username}" reports a deviation involving {n:d} of the operators, investigates it and QA '
                    'approves its closure'))
def deviation(ctx, evidence, username, n):
    from features.support.documents import run

    user = account(ctx, username)
    ctx.involved = ctx.operator_ids[:n]
    with timed(evidence, "deviation reported, investigated and closed"):
        ctx.deviation = report(ctx, username, "Mixer M-12 cleaned with the wrong detergent on night shift",
                               person_ids=ctx.involved, document_ids=[ctx.document.id])
        run(deviations.start_investigation, ctx.deviation, actor=user)
        run(deviations.classify, ctx.deviation, actor=user, classification="major",
            justification="Product quality possibly affected.", reason="Classified after first assessment")
        run(deviations.record_investigation, ctx.deviation, actor=user, investigation="Interviewed the shift.",
            root_cause="The detergents look alike.", root_cause_category="procedure", reason="Investigation complete")
        lines = deviations.training_adequacy(ctx.deviation)
        signed(deviations.submit_for_approval, ctx.deviation, user)
        signed(deviations.approve_closure, ctx.deviation, account(ctx, "quinn.qa"))
    trained_then = sum(1 for line in lines if line.then.qualified)
    evidence.record("Deviation", f"{ctx.deviation.number}: {fresh(ctx.deviation).status_label}; adequacy: "
                                 f"{trained_then} of {len(lines)} people trained on the revision in force then")
    assert ctx.deviation.status_label == "Closed" and len(lines) == n


@when(parsers.parse('"{username}" raises a CAPA from the deviation retraining those {n:d} operators, and QA approves '
                    'the plan and the retraining'))
def capa(ctx, evidence, username, n):
    from features.support.documents import prove, run

    owner, qa = account(ctx, username), account(ctx, "quinn.qa")
    with timed(evidence, "CAPA raised, plan and retraining approved"):
        ctx.capa = run(capa_services.create_capa, actor=owner, title="Detergent mix-up on mixer M-12",
                       source_type="deviation", source_id=ctx.deviation.id,
                       problem_statement="Wrong detergent used.", root_cause="The detergents look alike.",
                       owner_id=owner.id)
        ctx.action = run(capa_services.add_action, ctx.capa, ActionInput(
            kind="corrective", description="Retrain the night shift", owner_id=owner.id,
            due_on=clock.now_utc().date() + timedelta(days=14), retraining=True, document_ids=[ctx.document.id],
            user_ids=ctx.involved), actor=owner, expected_row_version=fresh(ctx.capa).row_version)
        signed(capa_services.approve_plan, ctx.capa, qa)
        result = run(capa_services.approve_retraining_action, ctx.action, actor=qa, proof=prove(qa),
                     expected_row_version=fresh(ctx.capa).row_version)
    evidence.record("CAPA", f"{ctx.capa.number}: {result.created} retraining assignments")
    assert result.created == n


@when(parsers.parse('the {n:d} operators complete the retraining and "{username}" verifies the CAPA effective'))
def retrain(ctx, evidence, n, username):
    from features.support.documents import train

    owner = account(ctx, username)
    rev = revision(ctx, "1.0")
    with timed(evidence, f"{n} retraining ceremonies, action done, effectiveness verified"):
        for uid in ctx.involved:
            train(db.session.get(User, uid), rev)
        from features.support.documents import run

        run(capa_services.complete_action, fresh(ctx.action), actor=owner, evidence="Retraining records complete")
        run(capa_services.start_effectiveness_check, ctx.capa, actor=owner,
            expected_row_version=fresh(ctx.capa).row_version, due_on=clock.now_utc().date() + timedelta(days=30))
        signed(capa_services.record_effectiveness, ctx.capa, owner, result="No mix-up in 30 days", effective=True)
    open_left = db.session.scalar(sa.select(sa.func.count()).select_from(TrainingAssignment).where(
        TrainingAssignment.source_type == SOURCE_CAPA_ACTION, TrainingAssignment.status == OPEN))
    assert open_left == 0


@then(parsers.parse('"{username}" closes the CAPA'))
def close(ctx, evidence, username):
    with timed(evidence, "CAPA closure"):
        signed(capa_services.close, ctx.capa, account(ctx, username))
    meanings = [s.meaning for s in capa_services.signatures_of(ctx.capa)]
    evidence.actual(f"{ctx.capa.number}: {fresh(ctx.capa).status_label}; signatures {meanings}")
    assert ctx.capa.status_label == "Closed"


@then("the audit trail integrity check passes over the whole process")
def verify_all(evidence):
    with timed(evidence, "audit trail verification"):
        result = audit.verify()
    evidence.actual(f"{result.transactions} transactions, {result.version_rows} version rows, {result.records} "
                    f"records: {'audit trail intact' if result.ok else result.chain_error or result.record_problems}")
    assert result.ok
