"""Signature manifests (21 CFR 11.50(b) electronic form, 11.70 linking): every manifest conforms to the shipped XSD,
shows each signature's three elements, and `verify_manifest` / `flask signatures verify-manifest` catch an edited
manifest, an altered record, and hostile XML without ever reading a file or URL it names."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import xmlschema

from core import clock
from core.audit import AuditTransaction
from core.db import db
from features.support.inspection import direct_sql
from signatures import manifest
from signatures import models as sig
from signatures.services import content_hash
from tests.integration.signing_helpers import make_revision, sign_as

XSD = Path(manifest.__file__).with_name("manifest.xsd")
NS = {"m": manifest.NAMESPACE}
REVIEWED_AT = datetime(2025, 3, 4, 9, 0, 0, tzinfo=UTC)
APPROVED_AT = datetime(2025, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)


@pytest.fixture
def people(make_user):
    return {
        "author": make_user("dora.author", roles={"document_author"}, full_name="Dora Author"),
        "reviewer": make_user("rita.review", roles={"qa_approver"}, full_name="Rita Reviewer"),
        "approver": make_user("quinn.qa", roles={"qa_approver"}, full_name="Quinn Approver"),
    }


@pytest.fixture
def signed(app, people):
    """Revision 1.0 of SOP-QA-001, reviewed then approved, and the ids of its two signatures."""
    revision = make_revision(people["author"])
    clock.freeze(REVIEWED_AT)
    reviewed = sign_as(people["reviewer"], revision, sig.REVIEWED, comment="Checked against the\nequipment manual.")
    clock.freeze(APPROVED_AT)
    approved = sign_as(people["approver"], revision, sig.APPROVED)
    return revision, reviewed.id, approved.id


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def _signature_element(data: bytes, sig_id: int) -> ET.Element:
    root = ET.fromstring(data)
    [element] = [e for e in root.findall("m:signature", NS) if e.get("id") == str(sig_id)]
    return element


# --- the schema ---------------------------------------------------------------------------------------------------


def test_xsd_lists_exactly_the_signature_meanings_of_the_model():
    tree = ET.parse(XSD)
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    meaning_type = tree.find("xs:simpleType[@name='Meaning']", xs)
    values = tuple(e.get("value") for e in meaning_type.iter("{http://www.w3.org/2001/XMLSchema}enumeration"))
    assert values == sig.MEANINGS


def test_xsd_is_strict_with_no_wildcards():
    tags = {element.tag.split("}")[1] for element in ET.parse(XSD).iter()}
    assert not tags & {"any", "anyAttribute", "redefine", "override", "import", "include"}
    assert manifest.schema().target_namespace == "urn:attest:signature-manifest:1"


# --- generating -----------------------------------------------------------------------------------------------------


def test_manifest_conforms_to_the_xsd_and_shows_each_signatures_printed_name_meaning_and_utc_time(app, signed):
    revision, reviewed_id, approved_id = signed
    data = manifest.build_manifest(revision)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    xmlschema.XMLSchema(str(XSD)).validate(data)  # the shipped file, independently of the module's cached copy
    root = ET.fromstring(data)
    assert root.tag == f"{{{manifest.NAMESPACE}}}signatureManifest"
    assert root.get("generatedAt").endswith("Z")
    record = root.find("m:record", NS)
    assert record.attrib == {"type": "qms_document_revision", "id": str(revision.id), "version": "1.0",
                             "title": "SOP-QA-001 revision 1.0", "contentSha256": content_hash(revision)}
    reviewed = _signature_element(data, reviewed_id)
    assert reviewed.get("meaning") == "Reviewed"
    assert reviewed.get("signedAt") == "2025-03-04T09:00:00Z"
    assert reviewed.find("m:signer", NS).text == "Rita Reviewer"
    assert reviewed.find("m:signer", NS).get("username") == "rita.review"
    assert reviewed.find("m:comment", NS).text == "Checked against the\nequipment manual."
    approved = _signature_element(data, approved_id)
    assert approved.get("meaning") == "Approved"
    assert approved.get("signedAt") == "2025-03-04T10:15:30.123456Z"
    assert approved.find("m:signer", NS).text == "Quinn Approver"
    assert approved.find("m:comment", NS) is None
    for element in (reviewed, approved):
        assert element.get("authMethod") == "password+totp"
        assert element.get("valid") == "true"
        assert element.find("m:contentSha256", NS).text == content_hash(revision)


def test_manifest_of_an_unsigned_record_lists_no_signatures_and_verifies(app, people):
    revision = make_revision(people["author"])
    data = manifest.build_manifest(revision)
    assert ET.fromstring(data).findall("m:signature", NS) == []
    assert manifest.verify_manifest(data) == []


def test_manifest_marks_signatures_invalid_once_the_record_was_altered(app, signed):
    revision, reviewed_id, approved_id = signed
    direct_sql("UPDATE qms_document_revision SET content_markdown = 'Skip cleaning.' WHERE id = :id", id=revision.id)
    data = manifest.build_manifest(revision)
    assert _signature_element(data, reviewed_id).get("valid") == "false"
    assert _signature_element(data, approved_id).get("valid") == "false"
    assert _signature_element(data, approved_id).get("status") == "invalid"


def test_generator_never_returns_a_manifest_that_breaks_the_xsd(app, signed, monkeypatch):
    revision, *_ = signed
    monkeypatch.setattr(manifest, "_generator", lambda: "   ")
    with pytest.raises(manifest.ManifestError, match="does not conform to manifest.xsd"):
        manifest.build_manifest(revision)
    monkeypatch.setattr(manifest, "_utc", lambda value: value.isoformat())  # "+00:00" instead of "Z"
    with pytest.raises(manifest.ManifestError, match="generatedAt"):
        manifest.build_manifest(revision)


def test_building_and_verifying_a_manifest_write_nothing(app, signed):
    revision, *_ = signed
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction))
    assert manifest.verify_manifest(manifest.build_manifest(revision)) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditTransaction)) == before


# --- verifying: an edited manifest -----------------------------------------------------------------------------


def test_untouched_manifest_verifies_with_no_problems(app, signed):
    revision, *_ = signed
    assert manifest.verify_manifest(manifest.build_manifest(revision)) == []


def test_edited_printed_name_is_reported_naming_the_field(app, signed):
    revision, _, approved_id = signed
    data = manifest.build_manifest(revision).replace(b">Quinn Approver<", b">Mallory Forger<")
    problems = manifest.verify_manifest(data)
    assert problems == [f"signature {approved_id}: printed name differs: manifest 'Mallory Forger', "
                        f"database 'Quinn Approver'"]


def test_edited_meaning_is_reported_naming_the_field(app, signed):
    revision, reviewed_id, _ = signed
    data = manifest.build_manifest(revision).replace(b'meaning="Reviewed"', b'meaning="Approved"')
    problems = manifest.verify_manifest(data)
    assert problems == [f"signature {reviewed_id}: meaning differs: manifest 'Approved', database 'Reviewed'"]


@pytest.mark.parametrize(("pattern", "replacement", "field"), [
    (rb'signedAt="2025-03-04T10:15:30.123456Z"', b'signedAt="2025-03-03T10:15:30.123456Z"', "signed at"),
    (rb'username="quinn.qa"', b'username="rita.review"', "username"),
    (rb'(meaning="Approved" signedAt="[^"]+" )authMethod="password\+totp"', rb'\1authMethod="password"',
     "authentication method"),
])
def test_each_edited_signature_field_is_reported(app, signed, pattern, replacement, field):
    revision, _, approved_id = signed
    data, n = re.subn(pattern, replacement, manifest.build_manifest(revision))
    assert n == 1
    problems = manifest.verify_manifest(data)
    assert len(problems) == 1 and problems[0].startswith(f"signature {approved_id}: {field} differs")


def test_edited_signature_content_hash_and_signer_id_are_reported(app, signed, people):
    revision, _, approved_id = signed
    data = manifest.build_manifest(revision)
    element = _signature_element(data, approved_id)
    wrong_hash = "0" * 64
    data = data.replace(f"<contentSha256>{element.find('m:contentSha256', NS).text}</contentSha256>".encode(),
                        f"<contentSha256>{wrong_hash}</contentSha256>".encode())
    approver_id, author_id = people["approver"].id, people["author"].id
    data = data.replace(f'<signer id="{approver_id}"'.encode(), f'<signer id="{author_id}"'.encode())
    problems = manifest.verify_manifest(data)
    assert any(p.startswith("signature") and "signer id differs" in p for p in problems)
    assert sum("content SHA-256 differs" in p for p in problems) == 2  # the edit hit both signatures' hashes


def test_signature_left_out_of_the_manifest_is_reported(app, signed):
    revision, reviewed_id, _ = signed
    data = manifest.build_manifest(revision).decode()
    data = re.sub(rf'\s*<signature id="{reviewed_id}".*?</signature>', "", data, flags=re.S)
    problems = manifest.verify_manifest(data.encode())
    assert problems == [f"signature {reviewed_id} (Reviewed by Rita Reviewer, 2025-03-04T09:00:00Z) of "
                        f"SOP-QA-001 revision 1.0 is missing from the manifest"]


def test_signature_added_after_the_manifest_was_generated_is_reported_missing(app, signed, make_user):
    revision, *_ = signed
    data = manifest.build_manifest(revision)
    clock.freeze(APPROVED_AT + timedelta(minutes=10))
    late = sign_as(make_user("sam.second", roles={"qa_approver"}, full_name="Sam Second"), revision, sig.APPROVED)
    problems = manifest.verify_manifest(data)
    assert len(problems) == 1 and problems[0].startswith(f"signature {late.id} (Approved by Sam Second")


def test_signature_moved_to_another_record_in_the_manifest_is_reported(app, signed, people):
    revision, *_ = signed
    other = make_revision(people["author"], number="SOP-QA-002")
    data = manifest.build_manifest(revision)
    data = data.replace(f'id="{revision.id}" version'.encode(), f'id="{other.id}" version'.encode())
    data = data.replace(b'title="SOP-QA-001 revision 1.0"', b'title="SOP-QA-002 revision 1.0"')
    problems = manifest.verify_manifest(data)
    assert any("content changed since the manifest was generated, or the manifest was altered" in p
               for p in problems)
    assert sum("belongs to another record" in p for p in problems) == 2


def test_manifest_naming_a_record_that_does_not_exist_is_reported(app, signed):
    revision, *_ = signed
    data = manifest.build_manifest(revision).replace(f'id="{revision.id}" version'.encode(), b'id="9999" version')
    assert manifest.verify_manifest(data) == [
        "record qms_document_revision 9999 does not exist in the database (or is not a signable record)"]


def test_manifest_claiming_a_signature_that_does_not_exist_is_reported(app, signed):
    revision, _, approved_id = signed
    data = manifest.build_manifest(revision).replace(f'<signature id="{approved_id}"'.encode(),
                                                     b'<signature id="424242"')
    problems = manifest.verify_manifest(data)
    assert "signature 424242 does not exist in the database" in problems
    assert any(p.startswith(f"signature {approved_id} ") and "missing from the manifest" in p for p in problems)


# --- verifying: an altered record ----------------------------------------------------------------------------------


def test_direct_sql_change_of_the_content_is_reported_with_the_invalid_signatures(app, signed):
    revision, reviewed_id, approved_id = signed
    data = manifest.build_manifest(revision)
    direct_sql("UPDATE qms_document_revision SET content_markdown = 'Skip cleaning.' WHERE id = :id", id=revision.id)
    problems = manifest.verify_manifest(data)
    assert any(p.startswith("record SOP-QA-001 revision 1.0: content changed since the manifest was generated")
               for p in problems)
    assert (f"signature {reviewed_id} (Reviewed by Rita Reviewer) is invalid: SOP-QA-001 revision 1.0 was altered "
            f"after signing") in problems
    assert (f"signature {approved_id} (Approved by Quinn Approver) is invalid: SOP-QA-001 revision 1.0 was altered "
            f"after signing") in problems


def test_manifest_generated_after_the_alteration_still_reports_the_invalid_signatures(app, signed):
    revision, *_ = signed
    direct_sql("UPDATE qms_document_revision SET content_markdown = 'Skip cleaning.' WHERE id = :id", id=revision.id)
    problems = manifest.verify_manifest(manifest.build_manifest(revision))
    assert len(problems) == 2 and all("was altered after signing" in p for p in problems)


def test_manifest_claiming_an_invalid_signature_is_valid_now_is_reported(app, signed):
    revision, reviewed_id, _ = signed
    direct_sql("UPDATE qms_document_revision SET content_markdown = 'Skip cleaning.' WHERE id = :id", id=revision.id)
    stale = manifest.build_manifest(revision)
    direct_sql("UPDATE qms_document_revision SET content_markdown = :text WHERE id = :id",
               text="# Purpose\n\nClean the mixer.\n", id=revision.id)
    problems = manifest.verify_manifest(stale)
    assert f"signature {reviewed_id}: validity differs: manifest says invalid, but it is valid now" in problems


def test_signatures_of_an_earlier_rejected_submission_are_listed_as_not_valid_without_being_a_problem(app, people):
    revision = make_revision(people["author"])
    first_review = sign_as(people["reviewer"], revision, sig.REVIEWED)
    rejection = sign_as(people["approver"], revision, sig.REJECTED, comment="Section 3 is unclear.")
    assert revision.signable_version == "1.0 submission 2"  # the rejection sent the revision back for rework
    second_review = sign_as(people["reviewer"], revision, sig.REVIEWED)
    data = manifest.build_manifest(revision)
    for old in (first_review, rejection):
        element = _signature_element(data, old.id)
        assert (element.get("recordVersion"), element.get("valid"), element.get("status")) == ("1.0", "false",
                                                                                                "earlier")
    element = _signature_element(data, second_review.id)
    assert (element.get("recordVersion"), element.get("valid"), element.get("status")) == ("1.0 submission 2",
                                                                                            "true", "valid")
    assert manifest.verify_manifest(data) == []
    relabelled = data.replace(b'status="earlier"', b'status="invalid"', 1)
    assert any("status differs: manifest 'invalid', now 'earlier'" in p for p in manifest.verify_manifest(relabelled))
    forged = data.replace(f'<signature id="{rejection.id}" recordVersion="1.0" meaning="Rejected" '.encode(),
                          f'<signature id="{rejection.id}" recordVersion="1.0 submission 2" meaning="Rejected" '
                          .encode()).replace(b'valid="false"', b'valid="true"')
    problems = manifest.verify_manifest(forged)
    assert f"signature {rejection.id}: record version differs: manifest '1.0 submission 2', database '1.0'" in problems
    assert any(p.startswith(f"signature {first_review.id}: validity differs: manifest says valid") for p in problems)


# --- verifying: input that is not a manifest, or hostile -------------------------------------------------------


def test_manifest_that_breaks_the_xsd_is_rejected_with_the_schema_error(app, signed):
    revision, *_ = signed
    data = manifest.build_manifest(revision).replace(b'meaning="Reviewed"', b'meaning="Reviewed by proxy"')
    [problem] = manifest.verify_manifest(data)
    assert problem.startswith("manifest does not conform to manifest.xsd at /signatureManifest/signature[1]")
    assert "meaning='Reviewed by proxy'" in problem


def test_unexpected_elements_and_bad_hashes_are_each_rejected_by_the_xsd(app, signed):
    revision, *_ = signed
    data = manifest.build_manifest(revision)
    upper = data.replace(f'contentSha256="{content_hash(revision)}"'.encode(),
                         f'contentSha256="{content_hash(revision).upper()}"'.encode())
    [problem] = manifest.verify_manifest(upper)
    assert "/signatureManifest/record" in problem and "contentSha256" in problem
    extra = data.replace(b"</signatureManifest>", b"<note>trust me</note></signatureManifest>")
    [problem] = manifest.verify_manifest(extra)
    assert "does not conform to manifest.xsd" in problem and "note" in problem
    local_time = data.replace(b'signedAt="2025-03-04T09:00:00Z"', b'signedAt="2025-03-04T10:00:00+01:00"')
    [problem] = manifest.verify_manifest(local_time)
    assert "signedAt" in problem


def test_not_xml_at_all_is_rejected(app):
    assert manifest.verify_manifest(b"%PDF-1.7 not a manifest")[0].startswith("manifest is not well-formed XML")
    assert manifest.verify_manifest(b"")[0].startswith("manifest is not well-formed XML")


def test_xxe_manifest_is_rejected_without_reading_the_file(app, signed, tmp_path):
    revision, *_ = signed
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = manifest.build_manifest(revision).decode()
    data = data.replace("<?xml version='1.0' encoding='utf-8'?>",
                        f'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "{secret.as_uri()}">]>')
    data = data.replace(">Quinn Approver<", ">&e;<")
    problems = manifest.verify_manifest(data.encode())
    assert len(problems) == 1 and "DTDs and entities are not allowed" in problems[0]
    assert "TOP-SECRET" not in problems[0]


def test_billion_laughs_is_rejected(app):
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                         for i in range(1, 10))
              + b']><signatureManifest xmlns="urn:attest:signature-manifest:1">&lol9;</signatureManifest>')
    [problem] = manifest.verify_manifest(laughs)
    assert "DTDs and entities are not allowed" in problem


def test_entities_are_refused_by_the_xml_parser_itself_too(app, monkeypatch):
    """Defence in depth: with the DOCTYPE pre-check switched off, xmlschema's defused parser still refuses."""
    monkeypatch.setattr(manifest, "_refuse_dtd", lambda data: None)
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    [problem] = manifest.verify_manifest(xxe)
    assert "Entities are forbidden" in problem


def test_no_url_named_in_a_manifest_is_ever_fetched(app, signed, monkeypatch):
    import xmlschema.resources.fetchers as fetchers
    import xmlschema.resources.xml_resource as xml_resource

    def refuse(*args, **kwargs):
        raise AssertionError(f"a URL was fetched: {args!r}")

    monkeypatch.setattr(xml_resource, "urlopen", refuse)
    monkeypatch.setattr(fetchers, "urlopen", refuse)
    revision, *_ = signed
    data = manifest.build_manifest(revision).replace(
        b"<signatureManifest ",
        b'<signatureManifest xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:schemaLocation="urn:attest:signature-manifest:1 http://attacker.invalid/manifest.xsd" ', 1)
    assert manifest.verify_manifest(data) == []


def test_oversized_manifest_is_refused_before_parsing(app):
    huge = b"<signatureManifest>" + b" " * manifest.MAX_MANIFEST_BYTES + b"</signatureManifest>"
    [problem] = manifest.verify_manifest(huge)
    assert problem.startswith("manifest refused: it is larger than 5 MB")


# --- the command line -------------------------------------------------------------------------------------------


def test_cli_writes_a_manifest_that_the_cli_then_verifies(app, signed, tmp_path):
    revision, *_ = signed
    out = tmp_path / "manifest.xml"
    result = _cli(app, "signatures", "manifest", "qms_document_revision", str(revision.id), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    xmlschema.XMLSchema(str(XSD)).validate(out.read_bytes())
    result = _cli(app, "signatures", "verify-manifest", str(out))
    assert result.exit_code == 0, result.output
    assert "manifest valid: 2 signatures checked" in result.output


def test_cli_prints_the_manifest_to_standard_output(app, signed):
    revision, *_ = signed
    result = _cli(app, "signatures", "manifest", "qms_document_revision", str(revision.id))
    assert result.exit_code == 0, result.output
    assert "Quinn Approver" in result.output and 'meaning="Approved"' in result.output


def test_cli_reports_each_problem_of_a_tampered_manifest_and_exits_1(app, signed, tmp_path):
    revision, reviewed_id, approved_id = signed
    data = manifest.build_manifest(revision)
    data = data.replace(b">Quinn Approver<", b">Mallory Forger<").replace(b'meaning="Reviewed"',
                                                                          b'meaning="Approved"')
    out = tmp_path / "tampered.xml"
    out.write_bytes(data)
    result = _cli(app, "signatures", "verify-manifest", str(out))
    assert result.exit_code == 1
    assert f"FAILED: signature {approved_id}: printed name differs" in result.output
    assert f"FAILED: signature {reviewed_id}: meaning differs" in result.output
    assert "manifest valid" not in result.output


def test_cli_reports_an_altered_record_and_exits_1(app, signed, tmp_path):
    revision, *_ = signed
    out = tmp_path / "manifest.xml"
    out.write_bytes(manifest.build_manifest(revision))
    direct_sql("UPDATE qms_document_revision SET content_markdown = 'Skip cleaning.' WHERE id = :id", id=revision.id)
    result = _cli(app, "signatures", "verify-manifest", str(out))
    assert result.exit_code == 1
    assert "content changed since the manifest was generated" in result.output
    assert result.output.count("was altered after signing") == 2


def test_cli_refuses_an_unknown_record(app):
    result = _cli(app, "signatures", "manifest", "qms_document_revision", "9999")
    assert result.exit_code != 0
    assert "no signable record qms_document_revision 9999" in result.output
    result = _cli(app, "signatures", "manifest", "no_such_type", "1")
    assert result.exit_code != 0


def test_cli_refuses_an_oversized_file_without_reading_it(app, tmp_path):
    big = tmp_path / "big.xml"
    with big.open("wb") as fh:
        fh.truncate(manifest.MAX_MANIFEST_BYTES + 1)
    result = _cli(app, "signatures", "verify-manifest", str(big))
    assert result.exit_code == 1
    assert "larger than 5 MB" in result.output
