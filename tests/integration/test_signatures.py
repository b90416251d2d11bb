"""Electronic signatures (21 CFR 11.50, 11.70, 11.100, 11.200; Annex 11 section 14): what a signature binds, who
can apply it, what refuses it, and that it can be neither changed nor moved."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import clock
from core.audit import AuditEvent, DeleteRefused
from core.auth import services as auth
from core.db import db, transaction
from core.errors import InvalidTransition, ValidationError
from features.support.inspection import direct_sql
from signatures import models as sig
from signatures.models import Signature
from signatures.services import (
    PROOF_TTL,
    SignatureRefused,
    authenticate,
    content_hash,
    is_valid,
    manifestation,
    sign,
    signatures_for,
)
from testkit.plugin import PASSWORD, totp_code
from tests.integration.signing_helpers import make_revision, prove, sign_as

SIGNED_AT = datetime(2025, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)


@pytest.fixture
def author(make_user):
    return make_user("dora.author", roles={"document_author"}, full_name="Dora Author")


@pytest.fixture
def approver(make_user):
    return make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn Approver")


@pytest.fixture
def revision(author):
    return make_revision(author)


def _events(event_type: str, user) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.event_type == event_type,
                                                               AuditEvent.subject_user_id == user.id)))


def _signature_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Signature))


def test_signature_binds_signer_printed_name_utc_time_meaning_record_version_and_content_hash(
        app, approver, revision):
    clock.freeze(SIGNED_AT)
    proof = prove(approver)
    assert proof is not None and proof.method == "password+totp"
    with transaction():
        signature = sign(revision, signer=approver, proof=proof, meaning=sig.APPROVED, comment="  Fit for use.  ")
    db.session.expire_all()
    stored = db.session.get(Signature, signature.id)
    assert stored.signer_id == approver.id
    assert stored.username == "quinn.qa"
    assert stored.printed_name == "Quinn Approver"
    assert stored.signed_at == clock.now_utc() and stored.signed_at.tzinfo == UTC
    assert stored.meaning == "Approved"
    assert (stored.record_type, stored.record_id, stored.record_version) == ("qms_document_revision", revision.id,
                                                                             "1.0")
    assert stored.content_sha256 == hashlib.sha256(revision.canonical_content()).hexdigest()
    assert stored.auth_method == "password+totp"
    assert stored.comment == "Fit for use."


def test_printed_name_is_kept_as_at_signing_when_the_user_is_renamed_later(app, approver, revision):
    signature = sign_as(approver, revision, sig.APPROVED)
    with transaction(reason="Name changed after marriage"):
        auth.update_profile(approver, full_name="Quinn Married-Name", email=approver.email, site_id=None,
                            department_id=None, supervisor_id=None, timezone=None)
    db.session.expire_all()
    assert db.session.get(Signature, signature.id).printed_name == "Quinn Approver"
    assert "Quinn Approver" in manifestation(db.session.get(Signature, signature.id))


def test_content_hash_covers_document_identity_revision_and_stored_content(app, revision):
    before = content_hash(revision)
    revision.content_markdown = "# Purpose\n\nClean the mixer twice.\n"
    assert content_hash(revision) != before
    db.session.rollback()


def test_password_only_signature_records_the_method(app, make_user, revision):
    reader = make_user("no.totp", full_name="Nora Password", totp=False)
    proof = prove(reader)
    assert proof is not None and proof.method == "password"
    with transaction():
        signature = sign(revision, signer=reader, proof=proof, meaning=sig.REVIEWED)
    assert signature.auth_method == "password"


def test_wrong_password_is_refused_audited_as_signature_failure_and_counts_toward_lockout(app, approver):
    for attempt in range(1, 5):
        assert prove(approver, password="not-the-password-1") is None
        db.session.refresh(approver.security)
        assert approver.security.failed_attempts == attempt
        assert not approver.security.locked
    assert prove(approver, password="not-the-password-1") is None
    db.session.refresh(approver.security)
    assert approver.security.locked
    failures = _events("signature.failure", approver)
    assert len(failures) == 5
    assert all("wrong password" in event.detail for event in failures)
    assert len(_events("account.locked", approver)) == 1
    # once locked, even the right password is refused (and audited)
    assert prove(approver) is None
    assert len(_events("signature.failure", approver)) == 6


def test_successful_signature_authentication_resets_the_failure_count(app, approver):
    assert prove(approver, password="not-the-password-1") is None
    assert prove(approver) is not None
    db.session.refresh(approver.security)
    assert approver.security.failed_attempts == 0


def test_wrong_or_missing_totp_code_is_refused_audited_and_counts_toward_lockout(app, approver):
    good = totp_code(approver)
    wrong = f"{(int(good) + 500_000) % 1_000_000:06d}"
    assert prove(approver, code=wrong) is None
    assert prove(approver, code="") is None
    db.session.refresh(approver.security)
    assert approver.security.failed_attempts == 2
    failures = _events("signature.failure", approver)
    assert len(failures) == 2 and all("second-factor" in event.detail for event in failures)


def test_replayed_totp_code_is_refused(app, approver):
    code = totp_code(approver)
    assert prove(approver, code=code) is not None
    assert prove(approver, code=code) is None
    assert len(_events("totp.replay", approver)) == 1


def test_signer_who_must_use_totp_but_never_enrolled_is_refused(app, make_user):
    approver = make_user("quinn.noenrol", roles={"qa_approver"}, full_name="Quinn Unenrolled", totp=False)
    with transaction():
        assert authenticate(approver, password=PASSWORD, totp_code=None) is None
    assert len(_events("signature.failure", approver)) == 1


def test_proof_of_one_user_cannot_be_used_to_sign_as_another(app, approver, make_user, revision):
    other = make_user("other.qa", roles={"qa_approver"}, full_name="Olga Other")
    proof = prove(approver)
    with pytest.raises(SignatureRefused, match="only be applied by the person who authenticated"), transaction():
        sign(revision, signer=other, proof=proof, meaning=sig.APPROVED)
    assert _signature_count() == 0


def test_expired_proof_is_refused(app, approver, revision):
    proof = prove(approver)
    clock.freeze(clock.now_utc() + PROOF_TTL + timedelta(seconds=1))
    with pytest.raises(SignatureRefused, match="expired"), transaction():
        sign(revision, signer=approver, proof=proof, meaning=sig.APPROVED)
    assert _signature_count() == 0


def test_meaning_not_allowed_for_the_record_is_refused_naming_the_field(app, approver, revision):
    proof = prove(approver)
    for meaning in (sig.EXECUTED, "Approved by proxy"):
        with pytest.raises(ValidationError) as info, transaction():
            sign(revision, signer=approver, proof=proof, meaning=meaning)
        assert info.value.field == "meaning"
        assert "Approved" in info.value.message
    assert _signature_count() == 0


def test_meanings_allowed_for_a_step_narrow_but_never_widen_the_records_meanings(app, approver, revision):
    proof = prove(approver)
    refusals = [((sig.APPROVED,), sig.REVIEWED, "Meaning must be one of: Approved."),
                ((sig.EXECUTED,), sig.EXECUTED, "No signature meaning is allowed"),
                ((), sig.APPROVED, "No signature meaning is allowed")]
    for allowed, meaning, message in refusals:
        with pytest.raises(ValidationError, match=message) as info, transaction():
            sign(revision, signer=approver, proof=proof, meaning=meaning, allowed=allowed)
        assert info.value.field == "meaning"
    assert _signature_count() == 0
    with transaction():
        sign(revision, signer=approver, proof=proof, meaning=sig.APPROVED, allowed=(sig.APPROVED, sig.REJECTED))
    assert _signature_count() == 1


def test_signing_twice_with_the_same_meaning_is_refused(app, approver, revision):
    sign_as(approver, revision, sig.APPROVED)
    with pytest.raises(SignatureRefused, match="already signed"):
        sign_as(approver, revision, sig.APPROVED)
    sign_as(approver, revision, sig.REVIEWED)  # another meaning is another signature
    assert _signature_count() == 2


def test_signing_a_revision_that_changed_since_the_page_was_loaded_is_refused(app, approver, revision):
    seen = revision.concurrency_token
    with transaction(reason="Typo in the change summary"):
        revision.change_summary = "First issue of the procedure"
    proof = prove(approver)
    with pytest.raises(InvalidTransition, match="changed since the page was loaded"), transaction():
        sign(revision, signer=approver, proof=proof, meaning=sig.APPROVED, expected_version=seen)
    assert _signature_count() == 0
    with transaction():
        sign(revision, signer=approver, proof=proof, meaning=sig.APPROVED,
             expected_version=revision.concurrency_token)
    assert _signature_count() == 1


def test_signature_rows_cannot_be_changed_or_deleted_through_the_application(app, approver, revision):
    signature = sign_as(approver, revision, sig.APPROVED)
    with pytest.raises(DeleteRefused, match="cannot be changed"), transaction(reason="Attempted correction"):
        signature.printed_name = "Somebody Else"
    db.session.expire_all()
    with pytest.raises(DeleteRefused, match="cannot be deleted"), transaction(reason="Attempted removal"):
        db.session.delete(db.session.get(Signature, signature.id))
    db.session.expire_all()
    assert db.session.get(Signature, signature.id).printed_name == "Quinn Approver"


@pytest.mark.parametrize("sql", ["UPDATE sig_signature SET printed_name = 'Somebody Else'",
                                 "UPDATE sig_signature SET record_id = record_id + 1",
                                 "DELETE FROM sig_signature"])
def test_database_refuses_raw_sql_update_or_delete_of_signatures(app, approver, revision, sql):
    sign_as(approver, revision, sig.APPROVED)
    db.session.rollback()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.exec_driver_sql(sql)
    db.session.expire_all()
    [stored] = signatures_for(revision)
    assert stored.printed_name == "Quinn Approver" and stored.record_id == revision.id


def test_signature_is_invalid_after_a_direct_sql_change_of_the_signed_content(app, approver, revision):
    signature = sign_as(approver, revision, sig.APPROVED)
    assert is_valid(signature, revision)
    direct_sql("UPDATE qms_document_revision SET content_markdown = :text WHERE id = :id",
               text="# Purpose\n\nSkip cleaning.\n", id=revision.id)
    assert not is_valid(db.session.get(Signature, signature.id), revision)


def test_signature_is_invalid_after_a_direct_sql_change_of_the_document_number(app, approver, revision):
    signature = sign_as(approver, revision, sig.APPROVED)
    direct_sql("UPDATE qms_document SET number = 'SOP-QA-999' WHERE id = :id", id=revision.document_id)
    assert not is_valid(db.session.get(Signature, signature.id), revision)


def test_signature_does_not_validate_for_another_record(app, approver, author, revision):
    other = make_revision(author, number="SOP-QA-002")
    signature = sign_as(approver, revision, sig.APPROVED)
    assert not is_valid(signature, other)


def test_manifestation_shows_printed_name_meaning_and_utc_time(app, approver, revision):
    clock.freeze(SIGNED_AT)
    signature = sign_as(approver, revision, sig.APPROVED)
    db.session.expire_all()
    text = manifestation(db.session.get(Signature, signature.id))
    assert "Quinn Approver" in text
    assert "Approved" in text
    assert "2025-03-04 10:15:30 UTC" in text


def test_signatures_for_lists_the_records_signatures_in_signing_order(app, approver, make_user, revision):
    reviewer = make_user("rita.review", roles={"qa_approver"}, full_name="Rita Reviewer")
    first = sign_as(reviewer, revision, sig.REVIEWED)
    clock.freeze(clock.now_utc() + timedelta(minutes=5))
    second = sign_as(approver, revision, sig.APPROVED)
    assert [s.id for s in signatures_for(revision)] == [first.id, second.id]


def test_audit_trail_still_verifies_after_signing_and_failed_attempts(app, approver, revision):
    assert prove(approver, password="not-the-password-1") is None
    sign_as(approver, revision, sig.APPROVED)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output
