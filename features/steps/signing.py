"""OQ steps for electronic signatures: the signing page, failed ceremonies, binding to content, immutability,
signature manifests and controlled copies."""

from __future__ import annotations

import html
import io
import re
import xml.etree.ElementTree as ET

import sqlalchemy as sa
from pytest_bdd import given, parsers, then, when

from core import audit
from core.db import db, transaction
from core.testing.pages import alerts, events, fresh
from features.steps.access import account, client_of
from features.support.inspection import as_application, newest, text_of
from signatures import manifest
from signatures import services as signing
from signatures.models import Signature
from testkit.plugin import PASSWORD, csrf_token, totp_code

EXPECTED_RE = re.compile(r'<input[^>]*name="expected_version"[^>]*value="(\d*)"')
NS = {"m": manifest.NAMESPACE}


def revision_url(revision, suffix: str = "") -> str:
    return f"/documents/{revision.document_id}/revisions/{revision.id}{suffix}"


def sign_on_page(client, user, revision, action: str, *, password: str = PASSWORD):
    url = revision_url(revision, f"/{action}")
    page = client.get(url)
    assert page.status_code == 200, text_of(page)[:500]
    body = page.get_data(as_text=True)
    meaning = re.search(r'<input type="hidden" name="meaning" value="([^"]+)"', body).group(1)
    return client.post(url, data={"password": password, "totp_code": totp_code(user), "comment": "",
                                  "meaning": html.unescape(meaning), "expected_version": EXPECTED_RE.search(body)
                                  .group(1), "csrf_token": csrf_token(client, url)})


@given(parsers.parse('revision {label} of the document is reviewed and waits for the approval of "{username}"'))
def reviewed_revision(ctx, evidence, label, username):
    from features.support.documents import new_revision, review_as, route, submit

    revision = new_revision(ctx.p, ctx.document)
    route(ctx.p, revision, approvers=[account(ctx, username)])
    submit(ctx.p, revision)
    review_as(ctx.p.reviewer, revision)
    assert revision.label == label
    ctx.revision = revision
    evidence.record("Revision", f"{ctx.document.number} rev {label}: authored by Ada Author, reviewed by Sam "
                                f"Supervisor, routed to {username} for approval")


@given(parsers.parse("revision {label} of the document is in review"))
def revision_in_review(ctx, evidence, label):
    from features.support.documents import new_revision, route, submit

    revision = new_revision(ctx.p, ctx.document)
    route(ctx.p, revision)
    submit(ctx.p, revision)
    assert revision.label == label
    ctx.revision = revision
    evidence.record("Revision", f"{ctx.document.number} rev {label}: in review by Sam Supervisor")


@given(parsers.parse("revision {label} of the document is effective"))
def revision_effective(ctx, evidence, label):
    from features.support.documents import effective_revision

    ctx.revision = effective_revision(ctx.p, ctx.document)
    assert ctx.revision.label == label and ctx.revision.status == "effective"
    evidence.record("Revision", f"{ctx.document.number} rev {label}: effective, signed Authored, Reviewed, Approved")


@when(parsers.parse('"{username}" opens the approval signing page of revision {label}'))
def open_signing_page(app, ctx, evidence, username, label):
    ctx.page = client_of(app, ctx, username).get(revision_url(ctx.revision, "/approve"))
    evidence.record("Signing page", f"HTTP {ctx.page.status_code}")


@then(parsers.parse('the page shows the document number, the revision, the content SHA-256, the meaning "{meaning}" '
                    'and the legal statement'))
def signing_page_shows(ctx, evidence, meaning):
    text = text_of(ctx.page)
    digest = signing.content_hash(ctx.revision)
    shown = {"number": ctx.document.number in text, "revision": "1.0" in text, "SHA-256": digest in text,
             "meaning": meaning in text, "statement": signing.DECLARATION in text}
    evidence.actual(", ".join(f"{k}: {'shown' if v else 'missing'}" for k, v in shown.items())
                    + f" (SHA-256 {digest})")
    assert ctx.page.status_code == 200 and all(shown.values())


@when(parsers.parse('"{username}" signs it with the password and the current authentication code'))
def sign_approval(app, ctx, evidence, username):
    user = account(ctx, username)
    ctx.response = sign_on_page(client_of(app, ctx, username), user, ctx.revision, "approve")
    evidence.record("Signature", f"HTTP {ctx.response.status_code}")


@then(parsers.parse('the revision is "{status}"'))
def revision_status(ctx, evidence, status):
    db.session.refresh(ctx.revision)
    evidence.actual(f"{ctx.revision.audit_title()}: {ctx.revision.status_label}")
    assert ctx.revision.status_label == status


@then(parsers.parse('the revision page shows the signature of "{name}" with meaning "{meaning}", its UTC time and '
                    'the status "{status}"'))
def revision_page_signature(app, ctx, evidence, name, meaning, status):
    signature = newest(Signature, Signature.record_id == ctx.revision.id, Signature.meaning == meaning)
    page = text_of(client_of(app, ctx, "quinn.qa").get(revision_url(ctx.revision)))
    shown = f"{signature.signed_at.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    found = re.search(rf"{re.escape(name)} {re.escape(meaning)} {re.escape(shown)} .*? {re.escape(status)}", page)
    evidence.actual(f"revision page shows '{found.group(0)[:120] if found else 'no such signature row'}'")
    assert signature.printed_name == name and found


@then(parsers.parse('the stored signature holds the signer, printed name, UTC time, meaning, revision and content '
                    'SHA-256, authenticated by "{method}"'))
def stored_signature(ctx, evidence, method):
    signature = newest(Signature, Signature.record_id == ctx.revision.id, Signature.meaning == "Approved")
    evidence.record("Signature", signature.id)
    evidence.actual(f"signer {signature.username} ({signature.printed_name}), {signature.signed_at.isoformat()}, "
                    f"{signature.meaning}, {signature.record_type} {signature.record_id} v{signature.record_version}, "
                    f"SHA-256 {signature.content_sha256}, {signature.auth_method}")
    assert (signature.username, signature.printed_name, signature.meaning) == ("quinn.qa", "Quinn QA", "Approved")
    assert signature.signed_at.utcoffset().total_seconds() == 0 and signature.record_version == "1.0"
    assert signature.content_sha256 == signing.content_hash(ctx.revision)
    assert signature.auth_method == method


@when(parsers.parse('"{username}" signs the approval of revision {label} with a wrong password'))
def sign_wrong_password(app, ctx, evidence, username, label):
    user = account(ctx, username)
    ctx.failures_before = fresh(user).security.failed_attempts
    ctx.response = sign_on_page(client_of(app, ctx, username), user, ctx.revision, "approve",
                                password="Not-my-password-at-all-1")
    ctx.last_user = username
    evidence.record("Signature attempt", f"HTTP {ctx.response.status_code}: {alerts(ctx.response)}")


@then(parsers.parse('the signature is refused and revision {label} is still "{status}" with no "{meaning}" signature'))
def signature_refused_nothing(ctx, evidence, label, status, meaning):
    db.session.refresh(ctx.revision)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Signature).where(
        Signature.record_id == ctx.revision.id, Signature.meaning == meaning))
    evidence.actual(f"HTTP {ctx.response.status_code}; {ctx.revision.audit_title()} is {ctx.revision.status_label}; "
                    f"'{meaning}' signatures: {count}")
    assert ctx.response.status_code in (401, 422) and ctx.revision.status_label == status and count == 0


@then(parsers.parse('the failed attempt is recorded as a "{event}" security event and counts toward lockout'))
def failure_recorded(ctx, evidence, event):
    user = fresh(account(ctx, ctx.last_user))
    recorded = events(event, user)
    evidence.actual(f"{len(recorded)} '{event}' event(s) {[e.detail for e in recorded]}; failed attempts "
                    f"{ctx.failures_before} -> {user.security.failed_attempts}")
    assert len(recorded) == 1 and user.security.failed_attempts == ctx.failures_before + 1


def attempt(ctx, action) -> None:
    try:
        with transaction():
            action()
        ctx.refusal = None
    except Exception as exc:  # the refusal is the observed result
        ctx.refusal = str(exc)
    db.session.expire_all()


@when(parsers.parse('"{username}" authenticates and his proof is used to sign as "{other}"'))
def proof_of_another(ctx, evidence, username, other):
    from features.support.documents import prove

    proof = prove(account(ctx, username))
    attempt(ctx, lambda: signing.sign(ctx.revision, signer=account(ctx, other), proof=proof, meaning="Approved"))


@when(parsers.parse('"{username}" signs "{meaning}" and the same authentication is used for a second signature'))
def reuse_proof(ctx, evidence, username, meaning):
    from features.support.documents import prove

    user = account(ctx, username)
    proof = prove(user)
    with transaction():
        signing.sign(ctx.revision, signer=user, proof=proof, meaning=meaning)
    evidence.record("First signature", f"{username} signed {meaning}")
    attempt(ctx, lambda: signing.sign(ctx.revision, signer=user, proof=proof, meaning="Rejected", comment="Again"))


@when(parsers.parse('"{username}" authenticates again and signs "{meaning}" a second time'))
def sign_twice(ctx, evidence, username, meaning):
    from features.support.documents import prove

    user = account(ctx, username)
    proof = prove(user)
    attempt(ctx, lambda: signing.sign(ctx.revision, signer=user, proof=proof, meaning=meaning))


@then(parsers.parse('the signature is refused with "{message}"'))
def refused_with(ctx, evidence, message):
    evidence.actual(f"refused: {ctx.refusal}")
    assert ctx.refusal is not None and message in ctx.refusal


@then(parsers.parse('"{username}" has exactly one "{meaning}" signature on revision {label}'))
def one_signature(ctx, evidence, username, meaning, label):
    rows = list(db.session.scalars(sa.select(Signature).where(
        Signature.record_id == ctx.revision.id, Signature.record_type == ctx.revision.signable_type)))
    mine = [s for s in rows if s.username == username and s.meaning == meaning]
    evidence.actual(f"signatures on rev {label}: {[(s.username, s.meaning) for s in rows]}")
    assert len(mine) == 1 and not any(s.signer_id == account(ctx, "quinn.qa").id for s in rows)


@when(parsers.parse("the content of revision {label} is changed directly in the database, bypassing the "
                    "application"))
def tamper_content(ctx, evidence, label):
    from features.support.inspection import direct_sql

    direct_sql("UPDATE qms_document_revision SET content_markdown = :c WHERE id = :id",
               c="# Purpose\n\nSkip the cleaning.\n", id=ctx.revision.id)
    evidence.record("Direct SQL", f"UPDATE qms_document_revision SET content_markdown = ... WHERE id = "
                                  f"{ctx.revision.id}")


@then(parsers.parse('the revision page shows all {n:d} signatures as "{status}"'))
def all_invalid(app, ctx, evidence, n, status):
    page = text_of(client_of(app, ctx, "otto.operator").get(revision_url(ctx.revision)))
    evidence.actual(f"'{status}' shown {page.count(status)} times")
    assert page.count(status) == n


@then("the integrity check fails naming the revision record")
def verify_names_revision(ctx, evidence):
    result = audit.verify()
    evidence.actual("; ".join(result.record_problems) or "audit trail intact")
    assert f"qms_document_revision id={ctx.revision.id} was changed outside the application (fields: " \
           f"content_markdown)" in result.record_problems


@when("the application changes the printed name of a signature through the application")
def orm_change_signature(ctx, evidence):
    signature = newest(Signature, Signature.record_id == ctx.revision.id)
    ctx.signature_id, ctx.signature_name = signature.id, signature.printed_name

    def change():
        signature.printed_name = "Mallory"
        db.session.flush()

    try:
        with transaction(reason="Correction"):
            change()
        ctx.refusal = None
    except audit.DeleteRefused as exc:
        ctx.refusal = str(exc)
    db.session.expire_all()


@then("the change is refused because signatures cannot be changed once recorded")
def orm_change_refused(ctx, evidence):
    name = db.session.get(Signature, ctx.signature_id).printed_name
    evidence.actual(f"refused: {ctx.refusal}; printed name still '{name}'")
    assert ctx.refusal and "cannot be changed once recorded" in ctx.refusal and name == ctx.signature_name


@when("the application's database account tries to update and delete a signature row")
def sql_change_signature(ctx, evidence):
    ctx.outcomes = as_application([f"UPDATE sig_signature SET printed_name = 'Mallory' WHERE id = {ctx.signature_id}",
                                   f"DELETE FROM sig_signature WHERE id = {ctx.signature_id}"])
    for sql, outcome in ctx.outcomes.items():
        evidence.record(sql, outcome)


@then("the database refuses both statements and the signature is unchanged")
def sql_refused(ctx, evidence):
    db.session.expire_all()
    signature = db.session.get(Signature, ctx.signature_id)
    evidence.actual(f"{list(ctx.outcomes.values())}; signature {ctx.signature_id} printed name "
                    f"'{signature.printed_name if signature else 'DELETED'}'")
    assert all("append-only" in o for o in ctx.outcomes.values())
    assert signature is not None and signature.printed_name == ctx.signature_name


@when(parsers.parse('"{username}" downloads the signature manifest of revision {label}'))
def download_manifest(app, ctx, evidence, username, label):
    response = client_of(app, ctx, username).get(revision_url(ctx.revision, "/manifest.xml"))
    assert response.status_code == 200
    ctx.manifest = response.data
    evidence.record("Manifest", f"{len(ctx.manifest)} bytes, {response.headers.get('Content-Disposition')}")


@then(parsers.parse("the manifest conforms to the shipped XSD and lists {n:d} signatures with printed name, meaning "
                    "and UTC time"))
def manifest_conforms(ctx, evidence, n):
    errors = list(manifest.schema().iter_errors(ctx.manifest.decode("utf-8")))
    root = ET.fromstring(ctx.manifest)
    signatures = [(s.find("m:signer", NS).text, s.get("meaning"), s.get("signedAt"))
                  for s in root.findall("m:signature", NS)]
    evidence.actual(f"XSD errors: {len(errors)}; signatures: {signatures}")
    assert errors == [] and len(signatures) == n
    assert all(name and meaning and at.endswith("Z") for name, meaning, at in signatures)


@then("checking the manifest against the database finds no difference")
def manifest_verifies(ctx, evidence):
    problems = manifest.verify_manifest(ctx.manifest)
    evidence.actual(f"problems: {problems or 'none'}")
    assert problems == []


@when("the printed name of the approval signature is edited in the manifest")
def edit_manifest(ctx, evidence):
    ctx.edited = ctx.manifest.replace(b">Quinn QA<", b">Mallory Forger<")
    assert ctx.edited != ctx.manifest
    ctx.approval_id = newest(Signature, Signature.record_id == ctx.revision.id, Signature.meaning == "Approved").id


@then(parsers.parse('checking the edited manifest names the signature and the field "{field}"'))
def edited_reported(ctx, evidence, field):
    problems = manifest.verify_manifest(ctx.edited)
    evidence.actual("; ".join(problems))
    assert problems == [f"signature {ctx.approval_id}: {field} differs: manifest 'Mallory Forger', database "
                        f"'Quinn QA'"]


@when("a manifest declaring an external entity is checked")
def check_xxe(ctx, tmp_path, evidence):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    doctype = f'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "{secret.as_uri()}">]>'
    data = ctx.manifest.decode().replace("<?xml version='1.0' encoding='utf-8'?>", doctype)
    ctx.problems = manifest.verify_manifest(data.replace(">Quinn QA<", ">&e;<").encode())


@then("it is refused without reading the entity")
def xxe_refused(ctx, evidence):
    evidence.actual("; ".join(ctx.problems))
    assert len(ctx.problems) == 1 and "DTDs and entities are not allowed" in ctx.problems[0]
    assert "TOP-SECRET" not in ctx.problems[0]


@when(parsers.parse('"{username}" prints the controlled copy of revision {label}'))
def print_copy(app, ctx, evidence, username, label):
    from pypdf import PdfReader

    response = client_of(app, ctx, username).get(revision_url(ctx.revision, "/controlled-copy.pdf"))
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    ctx.pages = [" ".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(response.data)).pages]
    evidence.record("Controlled copy", f"{len(response.data)} bytes, {len(ctx.pages)} page(s)")


@then(parsers.parse('every page of the PDF shows "{number}", the revision, its status, "{printed_by}" and the content '
                    'SHA-256'))
def every_page_shows(ctx, evidence, number, printed_by):
    digest = ctx.revision.content_sha256
    missing = [(n, item) for n, page in enumerate(ctx.pages, 1)
               for item in (number, "1.0", "Effective", printed_by, digest[:16]) if item not in page]
    evidence.actual(f"{len(ctx.pages)} page(s); missing: {missing or 'nothing'}")
    assert ctx.pages and missing == []


@then(parsers.parse('the PDF lists the signatures of "{a}", "{b}" and "{c}" with their meanings and UTC times'))
def pdf_signatures(ctx, evidence, a, b, c):
    last = ctx.pages[-1]
    found = {name: name in last for name in (a, b, c)}
    meanings = {m: m in last for m in ("Authored", "Reviewed", "Approved")}
    evidence.actual(f"last page: names {found}, meanings {meanings}, 'UTC' shown: {'UTC' in last}")
    assert all(found.values()) and all(meanings.values()) and "UTC" in last


@then(parsers.parse('the print is recorded in the audit trail under "{username}"'))
def print_recorded(ctx, evidence, username):
    from core.audit import AuditTransaction

    [printed] = events("document.printed")
    tx = db.session.get(AuditTransaction, printed.transaction_id)
    evidence.actual(f"'document.printed' by {tx.username} at {tx.issued_at.isoformat()}: {printed.detail}")
    assert tx.username == username and ctx.document.number in printed.detail
